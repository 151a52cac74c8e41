"""Case services on a real database: the protocol's rules as the product enforces them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reprisals.errors import CaseNotFound, InvalidInput, NotAllowed
from reprisals.models import Case, CaseContact, Outcome
from reprisals.sealing import is_sealed
from reprisals.services import (
    add_note,
    advance_case,
    assign_case,
    event_data,
    get_case,
    get_case_history,
    open_case,
    read_override_reason,
    view_identity,
)
from tests.conftest import Database
from tests.factories import (
    ACCEPT,
    CLOSE,
    CONSENT,
    FOLLOW_UP,
    REFER,
    RESPONSE,
    case_data,
    cipher,
    walk_to,
)
from tests.reprisals.conftest import Cast, count_rows
from workflow.engine import Engine
from workflow.errors import (
    GuardFailed,
    MissingFields,
    NotPermitted,
    TransitionNotAllowed,
    UnknownTrigger,
    WorkflowError,
)
from workflow.history import verify
from workflow.models import HistoryEvent

T0 = datetime(2025, 4, 16, 9, 30, tzinfo=UTC)
NO_CONSENT = {**CONSENT, "consent": "none"}
ANONYMOUS = {**CONSENT, "consent": "anonymous"}
ESCALATE = {"reason": "overdue", "recipient": "hmpps"}
OVERRIDE = {**REFER, "override_ground": "risk_to_life", "override_reason": "Threats to kill reported."}


def open_one(s: Session, wf: Engine, cast: Cast, now: datetime = T0, **overrides: Any) -> Case:
    """A case opened by the IMB staff member (so assigned to them), HMIP a party."""
    return open_case(s, wf, cipher(), cast.staff, now, case_data(cast.establishment, **overrides))


def history_count(s: Session, case: Case) -> int:
    return int(s.scalar(select(func.count()).select_from(HistoryEvent)
                        .where(HistoryEvent.instance_id == case.instance_id)) or 0)


def snapshot(s: Session, case: Case) -> tuple[Any, ...]:
    """What a refusal must leave alone: stage, version, variables, history, and the case's facts."""
    return (case.stage, case.instance.version, dict(case.instance.variables), history_count(s, case),
            case.consent, case.consent_override_reason, case.outcome, case.closed_at, case.risk,
            int(s.scalar(select(func.count()).select_from(CaseContact)) or 0))


# -- the worked example ---------------------------------------------------------------------------


def test_case_closes_substantiated_with_verified_history_when_worked_example_is_followed(
        database: Database, wf: Engine, cast: Cast) -> None:
    s = database.session()
    case = open_one(s, wf, cast)
    s.commit()
    assert case.reference == "RPR-2025-0001"
    assert case.stage == "reported" and case.owning_body_code == "IMB" and case.party_codes == {"HMIP"}
    assert case.assigned_user_id == cast.staff.id

    steps = [
        ("record_consent_and_risk", CONSENT, cast.staff, datetime(2025, 4, 16, 11, 0, tzinfo=UTC), "triage"),
        ("refer", REFER, cast.lead, datetime(2025, 4, 17, 10, 0, tzinfo=UTC), "referred"),
        ("record_response", RESPONSE, cast.staff, datetime(2025, 5, 2, 9, 0, tzinfo=UTC), "assessment"),
        ("accept_response", ACCEPT, cast.lead, datetime(2025, 5, 2, 15, 0, tzinfo=UTC), "follow_up"),
        ("complete_follow_up", FOLLOW_UP, cast.staff, datetime(2025, 5, 20, 12, 0, tzinfo=UTC), "closure_review"),
        ("close", CLOSE, cast.second_lead, datetime(2025, 5, 22, 16, 0, tzinfo=UTC), "closed"),
    ]
    for trigger, fields, who, at, reached in steps:
        event = advance_case(s, wf, who, case, trigger, fields, at)
        s.commit()
        assert (event.trigger, case.stage) == (trigger, reached)

    s2 = database.session()
    fresh = get_case(s2, cast.lead, "RPR-2025-0001")
    assert fresh.stage == "closed"
    assert fresh.outcome is Outcome.SUBSTANTIATED
    assert fresh.closed_at == datetime(2025, 5, 22, 16, 0, tzinfo=UTC)
    assert fresh.consent.value == "full"
    history = get_case_history(s2, wf, fresh)
    assert [e.kind for e in history] == ["created"] + ["transition"] * 6
    assert [e.trigger for e in history[1:]] == [t for t, *_ in steps]
    assert [e.actor_id for e in history[1:]] == [str(who.id) for _, _, who, _, _ in steps]
    contacts = s2.scalars(select(CaseContact).where(CaseContact.case_id == fresh.id).order_by(CaseContact.id)).all()
    assert [(c.kind, c.on.isoformat()) for c in contacts] == [("referral", "2025-04-17"), ("response", "2025-05-02")]
    # HMIP is a party: its lead sees the case (and is told), but not who the person is.
    assert get_case(s2, cast.party_lead, fresh.reference).id == fresh.id
    report = verify(s2)
    assert report.ok, report.findings
    assert report.events == 7


def test_close_refused_with_guard_failed_when_the_proposing_lead_confirms_a_finding(
        session: Session, wf: Engine, cast: Cast) -> None:
    case = open_one(session, wf, cast)
    walk_to(session, wf, case, "closure_review", lead=cast.lead, second_lead=cast.second_lead, now=T0)
    before = snapshot(session, case)
    for outcome in ("substantiated", "partly_substantiated", "inconclusive"):
        with pytest.raises(GuardFailed) as err:
            advance_case(session, wf, cast.lead, case, "close", {**CLOSE, "outcome": outcome}, T0)
        assert err.value.guard == "second_lead_confirms"
        assert snapshot(session, case) == before
    # A finding that needs no second pair of eyes can be closed by the same lead.
    advance_case(session, wf, cast.lead, case, "close", {**CLOSE, "outcome": "not_substantiated"}, T0)
    assert (case.stage, case.outcome) == ("closed", Outcome.NOT_SUBSTANTIATED)


def test_close_refused_when_the_proposing_lead_is_also_a_party_lead_acting_again(
        session: Session, wf: Engine, cast: Cast) -> None:
    """The guard compares people, not roles: the party body's lead proposing then confirming is refused."""
    case = open_one(session, wf, cast)
    walk_to(session, wf, case, "assessment", lead=cast.lead, second_lead=cast.second_lead, now=T0)
    advance_case(session, wf, cast.party_lead, case, "accept_response", ACCEPT, T0)
    advance_case(session, wf, cast.staff, case, "complete_follow_up", FOLLOW_UP, T0)
    with pytest.raises(GuardFailed):
        advance_case(session, wf, cast.party_lead, case, "close", CLOSE, T0)
    advance_case(session, wf, cast.lead, case, "close", CLOSE, T0)
    assert case.outcome is Outcome.SUBSTANTIATED


# -- consent ------------------------------------------------------------------------------------


def test_refer_refused_when_consent_is_none_and_no_override_is_given(
        session: Session, wf: Engine, cast: Cast) -> None:
    case = open_one(session, wf, cast)
    advance_case(session, wf, cast.staff, case, "record_consent_and_risk", NO_CONSENT, T0)
    before = snapshot(session, case)
    with pytest.raises(GuardFailed) as err:
        advance_case(session, wf, cast.lead, case, "refer", REFER, T0)
    assert err.value.guard == "consent_allows_referral"
    assert snapshot(session, case) == before
    # A ground without a reason is not an override.
    with pytest.raises(MissingFields) as missing:
        advance_case(session, wf, cast.lead, case, "refer", {**REFER, "override_ground": "risk_to_life"}, T0)
    assert set(missing.value.errors) == {"override_reason"}
    with pytest.raises(MissingFields):
        advance_case(session, wf, cast.lead, case, "refer", {**OVERRIDE, "override_reason": "   "}, T0)
    with pytest.raises(MissingFields) as bad_ground:
        advance_case(session, wf, cast.lead, case, "refer", {**OVERRIDE, "override_ground": "convenience"}, T0)
    assert "override_ground" in bad_ground.value.errors
    assert snapshot(session, case) == before
    assert case.consent_override_reason is None


def test_refer_refused_when_assigned_staff_overrides_missing_consent(
        session: Session, wf: Engine, cast: Cast) -> None:
    case = open_one(session, wf, cast)
    advance_case(session, wf, cast.staff, case, "record_consent_and_risk", NO_CONSENT, T0)
    with pytest.raises(NotPermitted):
        advance_case(session, wf, cast.staff, case, "refer", OVERRIDE, T0)
    assert case.stage == "triage" and case.consent_override_reason is None


def test_override_recorded_on_case_and_history_when_lead_refers_without_consent_for_risk_to_life(
        database: Database, wf: Engine, cast: Cast) -> None:
    s = database.session()
    case = open_one(s, wf, cast)
    advance_case(s, wf, cast.staff, case, "record_consent_and_risk", NO_CONSENT, T0)
    event = advance_case(s, wf, cast.lead, case, "refer", OVERRIDE, T0)
    s.commit()
    with database.session() as s2:
        fresh = get_case(s2, cast.lead, case.reference)
        assert fresh.stage == "referred"
        assert read_override_reason(cipher(), fresh) == "risk_to_life: Threats to kill reported."
        assert "Threats" not in (fresh.consent_override_reason or "")  # sealed with the case's key
        stored = s2.get(HistoryEvent, event.id)
        assert stored.actor_id == str(cast.lead.id)
        assert stored.data["fields"]["override_ground"] == "risk_to_life"  # a choice: not sealed
        assert is_sealed(stored.data["fields"]["override_reason"])
        assert event_data(cipher(), s2, stored.instance_id, stored.seq, stored.data)["fields"][
            "override_reason"] == "Threats to kill reported."
        assert verify(s2).ok


def test_override_refused_when_the_person_consented(session: Session, wf: Engine, cast: Cast) -> None:
    case = open_one(session, wf, cast)
    advance_case(session, wf, cast.staff, case, "record_consent_and_risk", CONSENT, T0)
    with pytest.raises(GuardFailed):
        advance_case(session, wf, cast.lead, case, "refer", OVERRIDE, T0)
    # A stray reason alone is refused too: history would show an override that never happened.
    with pytest.raises(GuardFailed):
        advance_case(session, wf, cast.lead, case, "refer", {**REFER, "override_reason": "just in case"}, T0)
    advance_case(session, wf, cast.lead, case, "refer", REFER, T0)
    assert case.stage == "referred" and case.consent_override_reason is None


def test_refer_allowed_without_override_when_consent_is_anonymous(
        session: Session, wf: Engine, cast: Cast) -> None:
    case = open_one(session, wf, cast)
    advance_case(session, wf, cast.staff, case, "record_consent_and_risk", ANONYMOUS, T0)
    advance_case(session, wf, cast.lead, case, "refer", REFER, T0)
    assert case.stage == "referred"


def test_refer_refused_when_the_head_of_establishment_is_not_a_recipient(
        session: Session, wf: Engine, cast: Cast) -> None:
    case = open_one(session, wf, cast)
    advance_case(session, wf, cast.staff, case, "record_consent_and_risk", CONSENT, T0)
    with pytest.raises(GuardFailed) as err:
        advance_case(session, wf, cast.lead, case, "refer", {**REFER, "recipients": ["youth_custody_service"]}, T0)
    assert err.value.guard == "recipients_fit_establishment"
    assert case.stage == "triage"


def test_record_only_allowed_only_when_consent_is_none(session: Session, wf: Engine, cast: Cast) -> None:
    reason = {"reason": "The person does not want anything sent."}
    for consent in ("full", "anonymous"):
        case = open_one(session, wf, cast)
        advance_case(session, wf, cast.staff, case, "record_consent_and_risk", {**CONSENT, "consent": consent}, T0)
        before = snapshot(session, case)
        with pytest.raises(GuardFailed) as err:
            advance_case(session, wf, cast.lead, case, "record_only", reason, T0)
        assert err.value.guard == "consent_is_none"
        assert snapshot(session, case) == before
    case = open_one(session, wf, cast)
    advance_case(session, wf, cast.staff, case, "record_consent_and_risk", NO_CONSENT, T0)
    advance_case(session, wf, cast.lead, case, "record_only", reason, T0 + timedelta(hours=1))
    assert (case.stage, case.outcome, case.closed_at) == ("closed", Outcome.RECORDED_ONLY, T0 + timedelta(hours=1))


# -- escalation, reopening, closing from anywhere -----------------------------------------------------


def test_third_escalation_refused_when_case_is_already_at_level_two(
        session: Session, wf: Engine, cast: Cast) -> None:
    case = open_one(session, wf, cast)
    walk_to(session, wf, case, "referred", lead=cast.lead, second_lead=cast.second_lead, now=T0)
    advance_case(session, wf, cast.lead, case, "escalate", ESCALATE, T0)
    assert (case.stage, case.instance.variables["escalation_level"]) == ("escalated", 1)
    advance_case(session, wf, cast.lead, case, "escalate",
                 {**ESCALATE, "recipient": "other", "recipient_other": "Head of IMB"}, T0)
    assert case.instance.variables["escalation_level"] == 2
    before = snapshot(session, case)
    with pytest.raises(GuardFailed) as err:
        advance_case(session, wf, cast.lead, case, "escalate", ESCALATE, T0)
    assert err.value.guard == "escalation_below_max"
    assert snapshot(session, case) == before
    # Rejecting a later response cannot escalate past the maximum either.
    advance_case(session, wf, cast.staff, case, "record_response", RESPONSE, T0)
    with pytest.raises(GuardFailed):
        advance_case(session, wf, cast.lead, case, "reject_response", {"reason": "No.", "recipient": "department"}, T0)
    levels = session.scalars(select(CaseContact.level).where(CaseContact.case_id == case.id,
                                                             CaseContact.kind == "escalation")).all()
    assert sorted(levels) == [1, 2]


def test_reopen_clears_outcome_when_within_six_months_of_closing(
        database: Database, wf: Engine, cast: Cast) -> None:
    s = database.session()
    case = open_one(s, wf, cast)
    walk_to(s, wf, case, "closed", lead=cast.lead, second_lead=cast.second_lead, now=T0)
    s.commit()
    later = T0 + timedelta(days=150)
    advance_case(s, wf, cast.lead, case, "reopen", {"reason": "Moved wing again."}, later)
    s.commit()
    with database.session() as s2:
        fresh = get_case(s2, cast.lead, case.reference)
        assert fresh.stage == "triage"
        assert fresh.outcome is None and fresh.closed_at is None
        v = fresh.instance.variables
        assert v["outcome"] is None and v["closed_at"] is None and v["proposed_finding"] is None
        assert verify(s2).ok
    # It can be taken forward and closed again, with a new closing time.
    advance_case(s, wf, cast.lead, case, "decline", {"reason": "Handled by PPO."}, later + timedelta(days=1))
    assert (case.outcome, case.closed_at) == (Outcome.REFERRED_ELSEWHERE, later + timedelta(days=1))


def test_reopen_refused_when_closed_more_than_six_months_ago(
        session: Session, wf: Engine, cast: Cast) -> None:
    case = open_one(session, wf, cast)
    walk_to(session, wf, case, "closed", lead=cast.lead, second_lead=cast.second_lead, now=T0)
    before = snapshot(session, case)
    with pytest.raises(GuardFailed) as err:
        advance_case(session, wf, cast.lead, case, "reopen", {"reason": "Late."}, T0 + timedelta(days=200))
    assert err.value.guard == "within_reopen_window"
    assert snapshot(session, case) == before
    assert case.outcome is Outcome.SUBSTANTIATED


def _case_at(s: Session, wf: Engine, cast: Cast, stage: str) -> Case:
    case = open_one(s, wf, cast)
    if stage == "escalated":
        walk_to(s, wf, case, "referred", lead=cast.lead, second_lead=cast.second_lead, now=T0)
        advance_case(s, wf, cast.lead, case, "escalate", ESCALATE, T0)
    else:
        walk_to(s, wf, case, stage, lead=cast.lead, second_lead=cast.second_lead, now=T0)
    assert case.stage == stage
    return case


OPEN_STAGES = ("reported", "triage", "referred", "escalated", "assessment", "follow_up", "closure_review")


@pytest.mark.parametrize(("trigger", "fields", "outcome"), [
    ("withdraw", {"reason": "Does not want to go on."}, Outcome.WITHDRAWN),
    ("left_custody", {}, Outcome.LEFT_CUSTODY),
], ids=["withdraw", "left_custody"])
def test_case_closes_with_matching_outcome_when_person_withdraws_or_leaves_from_any_open_stage(
        session: Session, wf: Engine, cast: Cast, trigger: str, fields: dict[str, str], outcome: Outcome) -> None:
    assert set(OPEN_STAGES) == set(wf.spec("sanctions").open_stages)
    at = T0 + timedelta(days=3)
    for stage in OPEN_STAGES:
        case = _case_at(session, wf, cast, stage)
        advance_case(session, wf, cast.staff, case, trigger, fields, at)
        assert (case.stage, case.outcome, case.closed_at) == ("closed", outcome, at), stage
        assert case.instance.variables["outcome"] == outcome.value
        with pytest.raises(TransitionNotAllowed):
            advance_case(session, wf, cast.staff, case, trigger, fields, at)
    assert verify(session).ok


# -- who may see and act -----------------------------------------------------------------------------


def test_case_not_found_when_unassigned_staff_admin_or_outside_lead_looks(
        database: Database, wf: Engine, cast: Cast) -> None:
    s = database.session()
    case = open_one(s, wf, cast)
    s.commit()
    for outsider in (cast.other_staff, cast.admin, cast.outside_lead):
        with pytest.raises(CaseNotFound) as err:
            get_case(s, outsider, case.reference)
        assert str(err.value) == f"no case {case.reference}"
        with pytest.raises(CaseNotFound):
            advance_case(s, wf, outsider, case, "record_consent_and_risk", CONSENT, T0)
        with pytest.raises(CaseNotFound):
            view_identity(s, wf, cipher(), outsider, case, "checking", T0)
        with pytest.raises(CaseNotFound):
            add_note(s, wf, cipher(), outsider, case, "a note", T0)
    # Indistinguishable from a case that does not exist.
    with pytest.raises(CaseNotFound):
        get_case(s, cast.other_staff, "RPR-2025-9999")
    assert case.stage == "reported" and history_count(s, case) == 1
    s.rollback()
    assert count_rows(database)["wf_history"] == 1


def test_assigned_staff_sees_case_when_assigned_by_a_lead(session: Session, wf: Engine, cast: Cast) -> None:
    case = open_one(session, wf, cast)
    assign_case(session, wf, cast.lead, case, cast.other_staff, T0, reason="Staff one on leave")
    assert get_case(session, cast.other_staff, case.reference).id == case.id
    advance_case(session, wf, cast.other_staff, case, "record_consent_and_risk", CONSENT, T0)
    with pytest.raises(CaseNotFound):
        get_case(session, cast.staff, case.reference)
    assert case.stage == "triage"


def test_auditor_sees_but_cannot_act_when_case_belongs_to_their_body(
        session: Session, wf: Engine, cast: Cast) -> None:
    case = open_one(session, wf, cast)
    assert get_case(session, cast.auditor, case.reference).id == case.id
    before = snapshot(session, case)
    with pytest.raises(NotPermitted):
        advance_case(session, wf, cast.auditor, case, "record_consent_and_risk", CONSENT, T0)
    with pytest.raises(NotPermitted):
        advance_case(session, wf, cast.auditor, case, "withdraw", {}, T0)
    with pytest.raises(NotAllowed):
        assign_case(session, wf, cast.auditor, case, cast.other_staff, T0)
    with pytest.raises(NotAllowed):
        add_note(session, wf, cipher(), cast.auditor, case, "auditor note", T0)
    with pytest.raises(NotAllowed):
        view_identity(session, wf, cipher(), cast.auditor, case, "curious", T0)
    with pytest.raises(NotAllowed):
        open_case(session, wf, cipher(), cast.auditor, T0, case_data(cast.establishment))
    assert snapshot(session, case) == before
    assert case.assigned_user_id == cast.staff.id


# -- bad input writes nothing ------------------------------------------------------------------------


def _refused_open(database: Database, wf: Engine, cast: Cast, data: dict[str, Any]) -> InvalidInput:
    before = count_rows(database)
    s = database.session()
    try:
        with pytest.raises(InvalidInput) as err:
            open_case(s, wf, cipher(), cast.staff, T0, data)
        assert not s.new and not s.dirty
        assert int(s.scalar(select(func.count()).select_from(Case)) or 0) == 0
    finally:
        s.rollback()
        s.close()
    assert count_rows(database) == before
    return err.value


def test_invalid_input_names_every_field_and_writes_nothing_when_open_case_gets_bad_data(
        database: Database, wf: Engine, cast: Cast) -> None:
    data = case_data(
        cast.establishment,
        establishment_id=987654,
        received_at="2025-04-17T10:00:00+01:00",  # after now
        channel="carrier_pigeon",
        age_group="elderly",
        risk="extreme",
        sanction_types=["transfer", "tickling"],
        detriment_dates=["2025-04-08", "2025-13-01", "2025-12-25"],
        original_contact_date="2025-05-01",
        detainee_date_of_birth="2030-01-01",
        party_bodies=["NOPE"],
        assigned_user_id=cast.outside_lead.id,
        favourite_colour="red",
    )
    del data["description"], data["detainee_name"]
    err = _refused_open(database, wf, cast, data)
    assert set(err.errors) == {
        "establishment_id", "received_at", "channel", "age_group", "risk", "sanction_types",
        "detriment_dates[1]", "detriment_dates[2]", "original_contact_date", "detainee_date_of_birth",
        "party_bodies", "assigned_user_id", "favourite_colour", "description", "detainee_name",
    }
    assert err.errors["received_at"] == "must not be in the future"
    assert err.errors["description"] == "is required"
    assert "tickling" in err.errors["sanction_types"]
    for field in err.errors:
        assert field in str(err)


ONE_BAD_VALUE: list[dict[str, Any]] = [
    {"establishment_id": None},
    {"establishment_id": "abc"},
    {"establishment_id": 10**30},
    {"establishment_id": True},
    {"assigned_user_id": "99999999999999999999999"},
    {"received_at": "yesterday"},
    {"received_at": 5},
    {"sanction_types": []},
    {"sanction_types": 5},
    {"detriment_dates": 5},
    {"party_bodies": 5},
    {"party_bodies": "XYZ"},
    {"party_bodies": [{"code": "HMIP"}]},
    {"detainee_name": "   "},
    {"detainee_name": "x" * 201},
    {"description": ["not", "text"]},
    {"channel": ["letter"]},
]


def test_invalid_input_names_the_field_when_open_case_gets_one_bad_value(
        database: Database, wf: Engine, cast: Cast) -> None:
    # One database for all the values: each refusal must leave it exactly as it was.
    wrong = []
    for bad in ONE_BAD_VALUE:
        err = _refused_open(database, wf, cast, case_data(cast.establishment, **bad))
        if set(err.errors) != set(bad):
            wrong.append((bad, err.errors))
    assert wrong == []


def test_party_body_accepted_when_given_as_a_single_code(session: Session, wf: Engine, cast: Cast) -> None:
    case = open_one(session, wf, cast, party_bodies="HMIP")
    assert case.party_codes == {"HMIP"}


# -- refused triggers change nothing -------------------------------------------------------------------


REFUSALS: list[tuple[str, Any, Any, type[WorkflowError]]] = [
    ("staff", "escalate_to_minister", CONSENT, UnknownTrigger),
    ("staff", "to_closed", {}, UnknownTrigger),  # transitions' auto-transition name
    ("staff", None, {}, UnknownTrigger),
    ("lead", "refer", REFER, TransitionNotAllowed),
    ("lead", "reopen", {"reason": "x"}, TransitionNotAllowed),
    ("auditor", "record_consent_and_risk", CONSENT, NotPermitted),
    ("party_lead", "refer", REFER, TransitionNotAllowed),
    ("staff", "record_consent_and_risk", {"consent": "maybe", "consent_date": "2025-02-30", "bogus": 1},
     MissingFields),
    ("staff", "record_consent_and_risk", None, MissingFields),
]


def test_specific_workflow_error_and_nothing_changed_when_advance_case_is_refused(
        database: Database, wf: Engine, cast: Cast) -> None:
    s = database.session()
    case = open_one(s, wf, cast)
    s.commit()
    reference = case.reference
    before_rows = count_rows(database)
    before = snapshot(s, case)
    for who, trigger, fields, error in REFUSALS:
        with pytest.raises(WorkflowError) as err:
            advance_case(s, wf, getattr(cast, who), case, trigger, fields, T0)
        assert type(err.value) is error, (who, trigger)
        assert snapshot(s, case) == before, (who, trigger)
        assert not s.dirty and not s.new
        if error is MissingFields:
            # Version 1's consent date is the action's moment: filled from it when not given.
            expected = {"consent", "risk"} | ({"consent_date", "bogus"} if fields else set())
            assert set(err.value.errors) == expected
            assert all(name in str(err.value) for name in expected)
        s.rollback()
    s.close()
    assert count_rows(database) == before_rows
    with database.session() as s2:
        fresh = get_case(s2, cast.lead, reference)
        assert (fresh.stage, fresh.instance.version, fresh.consent) == ("reported", before[1], None)
