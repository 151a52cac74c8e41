"""Random walks through the protocol on a real database: random triggers (real and bogus), random
people and random fields, through ``advance_case``; successes commit, refusals roll back. After
every step the protocol's invariants must hold and the history must verify."""

from __future__ import annotations

import itertools
import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from sqlalchemy import select
from sqlalchemy.orm import Session

from reprisals.access import can_view_case, case_roles
from reprisals.errors import CaseNotFound, ReprisalsError
from reprisals.models import Case, User
from reprisals.protocol import (
    CONSENTED,
    MAX_ESCALATION_LEVEL,
    OVERRIDE_GROUNDS,
    SECOND_LEAD_OUTCOMES,
    reopen_until,
)
from reprisals.services import advance_case, open_case
from tests.conftest import Database
from tests.factories import ACCEPT, CLOSE, CONSENT, FOLLOW_UP, REFER, RESPONSE, case_data, cipher
from tests.reprisals.conftest import Cast
from workflow.engine import Engine
from workflow.errors import NotPermitted, TransitionNotAllowed, UnknownTrigger, WorkflowError
from workflow.history import verify
from workflow.models import HistoryEvent

# Shrinking a failing run on a real database takes minutes (past the suite's 300 s timeout), so by
# default a failure is reported as found, every step printed; REPRISALS_SHRINK=1 shrinks it locally.
PHASES = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if os.environ.get("REPRISALS_SHRINK") else [])
T0 = datetime(2025, 4, 16, 9, 30, tzinfo=UTC)
MAX_CASES = 3
BOGUS_TRIGGERS = ["to_closed", "escalate_to_minister", "", "REFER", "trigger"]
ENDINGS = {"withdraw", "left_custody", "decline", "record_only"}  # ways out other than the main road
POST_REFERRAL = {"referred", "escalated", "assessment", "follow_up", "closure_review"}

VALID: dict[str, list[dict[str, Any]]] = {
    "record_consent_and_risk": [
        CONSENT, {**CONSENT, "consent": "anonymous"}, {**CONSENT, "consent": "none"},
        {**CONSENT, "consent": "none", "risk": "urgent", "risk_reason": "Threats reported."},
    ],
    "refer": [
        REFER,
        {**REFER, "recipients": ["head_of_establishment", "home_office_immigration_enforcement"]},
        {**REFER, "override_ground": "risk_to_life", "override_reason": "Threat to life."},
        {**REFER, "override_ground": "child_safeguarding", "override_reason": "A child at risk."},
        {**REFER, "recipients": ["head_of_establishment", "youth_custody_service"]},
    ],
    "change_consent": [{"consent": "full", "reason": "Agreed to be named."},
                       {"consent": "anonymous", "reason": "Wants not to be named."},
                       {"consent": "none", "reason": "Withdrew consent."}],
    "confirm_contact": [{"contact_with": "Duty governor"}],
    "send_back": [{"reason": "The finding does not follow from the response."}],
    "decline": [{"reason": "Out of scope."}, {"reason": "For the PPO.", "referred_to": "PPO"}],
    "record_only": [{"reason": "No consent to act."}],
    "record_response": [RESPONSE, {**RESPONSE, "responder": "central_authority"}],
    "escalate": [{"reason": "overdue", "recipient": "hmpps"},
                 {"reason": "unsatisfactory", "recipient": "other", "recipient_other": "MoJ"},
                 {"reason": "overdue", "recipient": "youth_custody_service"},
                 {"reason": "overdue", "recipient": "hmpps", "override_ground": "risk_to_life",
                  "override_reason": "Threat to life."}],
    "accept_response": [ACCEPT, {**ACCEPT, "proposed_finding": "not_substantiated"},
                        {**ACCEPT, "proposed_finding": "inconclusive"}],
    "reject_response": [{"reason": "Does not address the job loss.", "recipient": "hmpps"},
                        {"reason": "Does not address the job loss.", "recipient": "hmpps",
                         "copies": ["youth_custody_service"]}],
    "complete_follow_up": [FOLLOW_UP],
    "further_detriment": [{"summary": "Moved to another wing."}],
    "close": [CLOSE, {**CLOSE, "outcome": "not_substantiated"}, {**CLOSE, "outcome": "partly_substantiated"},
              {**CLOSE, "outcome": "inconclusive"}],
    "withdraw": [{}, {"reason": "Does not want to go on."}],
    "left_custody": [{}],
    "reopen": [{"reason": "New information."}],
}
MALFORMED: list[Any] = [
    None, {}, {"bogus": 1}, {"consent": "maybe", "consent_date": "2025-02-30", "risk": "standard"},
    {"recipients": "nobody", "sent_on": "2025-04-17"}, {**REFER, "override_ground": "risk_to_life"},
    {**REFER, "override_reason": "no ground"}, {"outcome": "withdrawn", "summary": "x"},
    {"reason": 5}, {"left_on": "tomorrow"}, {"reason": "x" * 3000}, {"reason": "overdue", "recipient": ""},
    {"reason": "overdue", "recipient": "other"}, {"consent": "full"},
    {**CLOSE, "extra": True}, {"proposed_finding": ["substantiated"], "assessment": "x"},
]
ALL_FIELDS = [f for fs in VALID.values() for f in fs] + MALFORMED
ACTORS = ["lead", "second_lead", "party_lead", "staff", "other_staff", "auditor", "outside_lead", "admin"]
SENSIBLE_ACTORS = ["lead", "second_lead", "staff"]


def _check_invariants(s: Any, wf: Engine, case_ids: list[int]) -> None:
    spec = wf.spec("sanctions")
    s.expire_all()
    cases = s.scalars(select(Case).where(Case.id.in_(case_ids))).all() if case_ids else []
    assert len(cases) == len(case_ids)
    events: dict[int, list[HistoryEvent]] = {}
    if cases:
        stmt = (select(HistoryEvent).where(HistoryEvent.instance_id.in_([c.instance_id for c in cases]))
                .order_by(HistoryEvent.instance_id, HistoryEvent.seq))
        for e in s.scalars(stmt):
            events.setdefault(e.instance_id, []).append(e)
    for case in cases:
        inst = case.instance
        history = events[case.instance_id]
        assert case.stage in spec.stages, case.stage
        assert history[-1].seq == inst.head_seq == len(history)
        moves = [e for e in history if e.kind == "transition"]
        assert (moves[-1].to_stage if moves else spec.initial) == case.stage
        # Nothing goes to the establishment without consent or a recorded override, judged by the consent
        # in force when it went (consent can change: narrowed or withdrawn, nothing more goes without one).
        refers = [e for e in moves if e.trigger == "refer"]
        if case.stage in POST_REFERRAL:
            assert refers, f"{case.reference} is at {case.stage} without ever being referred"
        consent, lowered = None, False
        for e in moves:
            fields = e.data["fields"]
            if e.trigger == "record_consent_and_risk":
                consent = fields["consent"]
            elif e.trigger == "change_consent":
                rank = {"none": 0, "anonymous": 1, "full": 2}
                lowered = (consent is not None and rank[fields["consent"]] < rank[consent]) or (
                    lowered and fields["consent"] != "full")
                consent = fields["consent"]
            elif e.trigger in ("refer", "escalate", "reject_response"):
                if consent not in CONSENTED or lowered:
                    assert fields.get("override_ground") in OVERRIDE_GROUNDS and fields.get("override_reason")
                    changed = any(m.trigger == "change_consent" for m in moves)
                    if e.trigger == "refer" and consent == "none" and not changed:
                        assert case.consent_override_reason, case.reference
                else:
                    assert "override_ground" not in fields and "override_reason" not in fields
            elif e.trigger == "record_only":
                assert consent == "none", case.reference
        assert (case.consent.value if case.consent else None) == consent, case.reference
        # Closed means an outcome and a closing time; open means neither.
        if spec.stages[case.stage].final:
            assert case.outcome is not None and case.closed_at is not None, case.reference
            assert inst.variables.get("outcome") == case.outcome.value
            assert moves[-1].at == case.closed_at
        else:
            assert case.outcome is None and case.closed_at is None, case.reference
            assert inst.variables.get("outcome") is None
        assert 0 <= int(inst.variables.get("escalation_level") or 0) <= MAX_ESCALATION_LEVEL
        # Reopening only within the window.
        for before, e in itertools.pairwise(moves):
            if e.trigger == "reopen":
                assert before.to_stage == "closed" and e.at <= reopen_until(before.at), case.reference
        # A finding that needs a second lead was never confirmed by the lead who proposed it.
        proposer = None
        for e in moves:
            if e.trigger == "accept_response":
                proposer = e.actor_id
            if e.trigger == "close" and e.data["fields"]["outcome"] in SECOND_LEAD_OUTCOMES:
                assert e.actor_id != proposer, case.reference
    report = verify(s)
    assert report.ok, report.findings
    s.rollback()


def test_invariants_hold_when_random_people_fire_random_triggers(
        database: Database, wf: Engine, cast: Cast) -> None:
    spec = wf.spec("sanctions")
    triggers = sorted(spec.triggers)
    assert set(triggers) == set(VALID)
    stats: Counter[str] = Counter()

    class ProtocolMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            # Each example runs inside one outer transaction that teardown rolls back (SQLAlchemy's
            # savepoint recipe): the session's commit releases a savepoint and its rollback returns
            # to the last one, exactly as seen from the session, while every example starts from
            # the same database and verify() reads only that example's history.
            self.conn = database.engine.connect()
            self.outer = self.conn.begin()
            self.s = Session(bind=self.conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
            self.now = T0
            self.case_ids: list[int] = []

        def teardown(self) -> None:
            self.s.close()
            self.outer.rollback()
            self.conn.close()

        @precondition(lambda self: len(self.case_ids) < MAX_CASES)
        @rule(by_lead=st.booleans(), risk=st.sampled_from(["standard", "high", "urgent"]),
              age_group=st.sampled_from(["adult", "child"]))
        def open_a_case(self, by_lead: bool, risk: str, age_group: str) -> None:
            extra = {"assigned_user_id": cast.staff.id} if by_lead else {}
            opener = cast.lead if by_lead else cast.staff
            case = open_case(self.s, wf, cipher(), opener, self.now,
                             case_data(cast.establishment, risk=risk, age_group=age_group, **extra))
            self.s.commit()
            self.case_ids.append(case.id)
            stats["opened"] += 1

        @rule(days=st.sampled_from([0, 1, 7, 200]))
        def pass_time(self, days: int) -> None:
            self.now += timedelta(days=days, minutes=1)

        @precondition(lambda self: self.case_ids)
        @rule(index=st.integers(0, MAX_CASES - 1), trigger=st.sampled_from(triggers + BOGUS_TRIGGERS),
              who=st.sampled_from(ACTORS), fields=st.sampled_from(ALL_FIELDS))
        def fire_anything(self, index: int, trigger: str, who: str, fields: Any) -> None:
            self._fire(index, trigger, who, fields)

        @precondition(lambda self: self.case_ids)
        @rule(index=st.integers(0, MAX_CASES - 1), data=st.data())
        def fire_something_sensible(self, index: int, data: st.DataObject) -> None:
            """A trigger that leaves the current stage, with valid fields, by a likely person: lets
            the walk reach the later stages that random triggers seldom do."""
            case = self.s.get(Case, self.case_ids[index % len(self.case_ids)])
            options = sorted(t.name for t in spec.triggers_from(case.stage))
            onward = [t for t in options if t not in ENDINGS] or options
            trigger = data.draw(st.sampled_from(onward) if data.draw(st.integers(0, 2), label="bias")
                                else st.sampled_from(options), label="trigger")
            likely = ["lead", "second_lead"] if "staff" not in spec.triggers[trigger].roles else SENSIBLE_ACTORS
            who = data.draw(st.sampled_from(likely), label="who")
            fields = data.draw(st.sampled_from(VALID[trigger]), label="fields")
            self._fire(index, trigger, who, fields)

        # The same rule twice, so that the walk takes the main road about as often as it wanders.
        fire_something_sensible_again = fire_something_sensible

        def _fire(self, index: int, trigger: str, who: str, fields: Any) -> None:
            s = self.s
            case = s.get(Case, self.case_ids[index % len(self.case_ids)])
            actor: User = getattr(cast, who)
            before = (case.stage, case.instance.version, case.instance.head_seq, self._history_count(case))
            try:
                advance_case(s, wf, actor, case, trigger, fields, self.now)
            except (WorkflowError, ReprisalsError) as exc:
                stats[type(exc).__name__] += 1
                # Refused: nothing changed, in memory or in what the session would flush.
                assert not s.new and not s.dirty, (trigger, who, exc)
                assert (case.stage, case.instance.version, case.instance.head_seq,
                        self._history_count(case)) == before, (trigger, who, exc)
                self._check_refusal(case, trigger, actor, exc)
                s.rollback()
                case = s.get(Case, case.id)
                assert (case.stage, case.instance.version, case.instance.head_seq,
                        self._history_count(case)) == before
                return
            trig = spec.triggers[trigger]
            stays_or_moves = case.stage == (trig.dest or before[0])
            assert before[0] in trig.sources and stays_or_moves, (trigger, before[0], case.stage)
            assert case_roles(actor, case) & trig.roles, (trigger, who)
            assert case.instance.head_seq == before[2] + 1
            s.commit()
            stats[f"ok:{trigger}"] += 1

        def _history_count(self, case: Case) -> int:
            return len(self.s.scalars(select(HistoryEvent.id)
                                      .where(HistoryEvent.instance_id == case.instance_id)).all())

        def _check_refusal(self, case: Case, trigger: str, actor: User, exc: Exception) -> None:
            """The refusal is the first rule broken, in the documented order."""
            if not can_view_case(actor, case):
                assert isinstance(exc, CaseNotFound), exc
                return
            trig = spec.triggers.get(trigger)
            if trig is None:
                assert isinstance(exc, UnknownTrigger), exc
            elif case.stage not in trig.sources:
                assert isinstance(exc, TransitionNotAllowed), exc
            elif not case_roles(actor, case) & trig.roles:
                assert isinstance(exc, NotPermitted), exc

        @invariant()
        def protocol_holds(self) -> None:
            _check_invariants(self.s, wf, self.case_ids)

    run_state_machine_as_test(ProtocolMachine, settings=settings(
        # derandomize: the same walks every run (a fresh draw now and then did not reach the referral, which
        # failed the run for nothing); REPRISALS_STATEFUL_RANDOM=1 draws afresh locally.
        derandomize=not os.environ.get("REPRISALS_STATEFUL_RANDOM"),
        max_examples=25, stateful_step_count=40, deadline=None, database=None, report_multiple_bugs=False,
        phases=PHASES,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    ))
    # The walk must have gone somewhere: past the referral, and into several kinds of refusal (each
    # refusal's kind is checked as it happens). The services tests walk the deeper stages deterministically.
    reached = {k.removeprefix("ok:") for k in stats if k.startswith("ok:")}
    assert {"record_consent_and_risk", "refer"} <= reached, stats
    refusals = {"CaseNotFound", "UnknownTrigger", "TransitionNotAllowed", "NotPermitted", "GuardFailed"}
    assert len(refusals & set(stats)) >= 3, stats
