"""What deadlines mean for cases, on a real database with the real services and the real protocol:
the worked example's dates, who is reminded and told, idempotent messages without identity, and who
may move a deadline."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from notifications.models import OutboxMessage
from reprisals.deadlines import (
    extend_deadline,
    is_overdue,
    list_deadlines,
    make_timer_handler,
    pause_deadline,
    resume_deadline,
)
from reprisals.errors import CaseNotFound, InvalidInput, NotAllowed
from reprisals.messaging import Messenger
from reprisals.models import Case, User
from reprisals.sealing import is_sealed
from reprisals.services import advance_case, event_data, open_case
from tests.conftest import Database
from tests.factories import (
    ACCEPT,
    CANARY_DESCRIPTION,
    CANARY_DOB,
    CANARY_NAME,
    CANARY_NUMBER,
    CONSENT,
    REFER,
    RESPONSE,
    case_data,
    cipher,
)
from tests.reprisals.conftest import Cast
from workflow.deadlines import Timers
from workflow.engine import Engine
from workflow.models import DeadlineRow, HistoryEvent, TimerRow, WorkflowInstance
from workflow.sweep import Fired

LONDON = ZoneInfo("Europe/London")
BASE_URL = "https://reprisals.example.test/"
TIMERS = Timers()
HANDLER = make_timer_handler(Messenger(BASE_URL))


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=LONDON)


OPENED = local("2025-04-16 10:30")  # received 10:00 (tests.factories.case_data)
CONSENTED = local("2025-04-16 11:00")
REFERRED = local("2025-04-17 14:00")
RESPONSE_DUE = local("2025-05-06 17:00")
REMINDER_AT = local("2025-04-30 09:00")


def open_referred(s: Session, wf: Engine, cast: Cast, *, opener: User | None = None) -> Case:
    """The worked example up to the referral: opened Wed 16 Apr 2025, referred Thu 17 Apr."""
    case = open_case(s, wf, cipher(), opener or cast.staff, OPENED, case_data(cast.establishment))
    advance_case(s, wf, cast.lead, case, "record_consent_and_risk", CONSENT, CONSENTED)
    advance_case(s, wf, cast.lead, case, "refer", REFER, REFERRED)
    return case


def running(s: Session, case: Case) -> dict[str, DeadlineRow]:
    return {d.deadline.name: d.deadline for d in list_deadlines(s, case=case)}


def outbox(s: Session) -> list[OutboxMessage]:
    return list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def sent(s: Session) -> set[tuple[str, str, str]]:
    """(reference, template, user id) of every in-app message."""
    return {(m.context["reference"], m.template, m.recipient) for m in outbox(s) if m.channel == "inapp"}


def emailed(s: Session) -> set[tuple[str, str, str]]:
    """(reference, template, address) of every e-mail (the default channel: the log)."""
    return {(m.context["reference"], m.template, m.recipient) for m in outbox(s) if m.channel == "log"}


def by_email(s: Session, messages: set[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """The e-mails that should go with these in-app messages (every test user has e-mail on)."""
    addresses = {str(u.id): u.email for u in s.scalars(select(User))}
    return {(ref, template, addresses[user_id]) for ref, template, user_id in messages}


def rerun_fired_timers(s: Session) -> None:
    """Call the handler again for every timer that fired, as a crash before the bookkeeping would."""
    handled = select(TimerRow).where(TimerRow.status == "fired", TimerRow.lateness_ms.is_not(None))
    for timer in s.scalars(handled):
        deadline = s.get(DeadlineRow, timer.deadline_id)
        instance = s.get(WorkflowInstance, timer.instance_id)
        assert deadline is not None and instance is not None
        assert timer.fired_at is not None
        # As a later sweep would: another time, another lateness.
        HANDLER(s, Fired(timer, deadline, instance, timer.fired_at + timedelta(minutes=5), timedelta(minutes=5)))
    s.flush()


# -- the worked example ----------------------------------------------------------------------------


def test_deadlines_fall_on_the_worked_example_dates_when_the_england_case_runs_through_the_services(
        database: Database, wf: Engine, cast: Cast) -> None:
    s = database.session()
    case = open_case(s, wf, cipher(), cast.staff, OPENED, case_data(cast.establishment))
    assert {n: d.due_at for n, d in running(s, case).items()} == {"consent_and_risk": local("2025-04-17 17:00")}

    advance_case(s, wf, cast.staff, case, "record_consent_and_risk", CONSENT, CONSENTED)
    # 2 WD from receipt: 18 and 21 Apr are bank holidays.
    assert {n: d.due_at for n, d in running(s, case).items()} == {"triage_decision": local("2025-04-22 17:00")}

    advance_case(s, wf, cast.lead, case, "refer", REFER, REFERRED)
    s.commit()
    (response,) = running(s, case).values()
    assert (response.name, response.label, response.action) == (
        "establishment_response", "Establishment response", "overdue_escalate")
    assert response.due_at == RESPONSE_DUE  # Tue 6 May: 5 May is a bank holiday
    timers = s.scalars(select(TimerRow).where(TimerRow.deadline_id == response.id).order_by(TimerRow.fire_at)).all()
    assert [(t.kind, t.fire_at) for t in timers] == [("reminder", REMINDER_AT), ("due", RESPONSE_DUE)]

    advance_case(s, wf, cast.staff, case, "record_response", RESPONSE, local("2025-05-02 10:00"))
    advance_case(s, wf, cast.lead, case, "accept_response", ACCEPT, local("2025-05-02 15:00"))
    s.commit()
    assert {n: d.due_at for n, d in running(s, case).items()} == {"follow_up_contact": local("2025-06-03 17:00")}
    assert s.get(DeadlineRow, response.id).status == "done"  # type: ignore[union-attr]
    assert not is_overdue(s, case)
    s.close()


# -- messages ----------------------------------------------------------------------------------------


def test_one_reminder_goes_to_the_assigned_staff_when_a_reminder_is_due_and_sweeps_repeat(
        database: Database, wf: Engine, cast: Cast) -> None:
    s = database.session()
    case = open_referred(s, wf, cast)
    unassigned = open_referred(s, wf, cast, opener=cast.lead)  # a lead opening a case is not assigned to it
    s.commit()
    assert (case.assigned_user_id, unassigned.assigned_user_id) == (cast.staff.id, None)

    result = TIMERS.sweep_due(s, REMINDER_AT, HANDLER)
    assert result.fired == 2

    messages = [m for m in outbox(s) if m.context["reference"] == case.reference]
    # One reminder, to the staff member's in-app inbox and by e-mail (sent at once: 09:00 on a working day).
    assert [(m.template, m.channel, m.recipient, m.urgent, m.status, m.next_attempt_at) for m in messages] == [
        ("reminder", "inapp", str(cast.staff.id), False, "pending", REMINDER_AT),
        ("reminder", "log", cast.staff.email, False, "pending", REMINDER_AT),
    ]
    assert messages[0].context == messages[1].context == {
        "reference": case.reference,
        "deadline": "Establishment response",
        "stage": "referred",
        "due_at": "2025-05-06T16:00:00+00:00",
        "due_text": "Tue 6 May 2025, 17:00",
        "url": f"https://reprisals.example.test/cases/{case.reference}",
        "late_by_seconds": 0,
        "late_text": None,
    }
    # Nobody assigned: the owning body's leads are reminded instead (not the party body's lead).
    assert {(t, r) for ref, t, r in sent(s) if ref == unassigned.reference} == {
        ("reminder", str(cast.lead.id)), ("reminder", str(cast.second_lead.id))}
    assert emailed(s) == by_email(s, sent(s))
    assert all(d.deadline.status == "open" for d in list_deadlines(s))

    before = sent(s), len(outbox(s))
    again = TIMERS.sweep_due(s, REMINDER_AT + timedelta(hours=1), HANDLER)
    rerun_fired_timers(s)
    s.commit()
    assert again.fired == 0
    assert (sent(s), len(outbox(s))) == before
    s.close()


def test_deadline_is_overdue_and_staff_and_leads_are_told_once_when_it_passes(
        database: Database, wf: Engine, cast: Cast) -> None:
    s = database.session()
    case = open_referred(s, wf, cast)
    in_triage = open_case(s, wf, cipher(), cast.staff, OPENED, case_data(cast.establishment))
    advance_case(s, wf, cast.staff, in_triage, "record_consent_and_risk", CONSENT, CONSENTED)
    s.commit()
    assert not is_overdue(s, case) and list_deadlines(s, overdue=True) == []

    swept_at = local("2025-05-07 09:00")  # the morning after the response was due
    TIMERS.sweep_due(s, swept_at, HANDLER)

    assert is_overdue(s, case) and is_overdue(s, in_triage)
    assert [(d.reference, d.deadline.name, d.deadline.status) for d in list_deadlines(s, overdue=True)] == [
        (in_triage.reference, "triage_decision", "overdue"),  # due 22 Apr: the oldest first
        (case.reference, "establishment_response", "overdue"),
    ]
    assert list_deadlines(s, overdue=True, case=case)[0].deadline.overdue_at == swept_at
    staff, lead, second = str(cast.staff.id), str(cast.lead.id), str(cast.second_lead.id)
    assert {(t, r) for ref, t, r in sent(s) if ref == case.reference} == {
        ("overdue", staff), ("overdue", lead), ("overdue", second),
        ("escalation_prompt", lead), ("escalation_prompt", second),
    }  # the reminder of 30 Apr was never sent: its deadline had passed when the sweep came
    # A triage deadline is not one the establishment missed: no prompt to escalate.
    assert {(t, r) for ref, t, r in sent(s) if ref == in_triage.reference} == {
        ("overdue", staff), ("overdue", lead), ("overdue", second)}
    assert emailed(s) == by_email(s, sent(s))  # each also by e-mail
    overdue = [m for m in outbox(s) if m.context["reference"] == case.reference and m.template == "overdue"]
    assert {m.channel for m in overdue} == {"inapp", "log"}
    for m in overdue:  # urgent: the e-mail goes at once, not held for working hours
        assert (m.urgent, m.next_attempt_at) == (True, swept_at)
        assert (m.context["late_by_seconds"], m.context["late_text"]) == (16 * 3600, "16 hours")

    count = len(outbox(s))
    TIMERS.sweep_due(s, swept_at + timedelta(days=1), HANDLER)
    rerun_fired_timers(s)
    s.commit()
    assert len(outbox(s)) == count
    assert len({m.idempotency_key for m in outbox(s)}) == count
    s.close()


def test_no_outbox_row_contains_identity_or_the_description_when_every_kind_of_message_is_sent(
        database: Database, wf: Engine, cast: Cast) -> None:
    s = database.session()
    case = open_referred(s, wf, cast, opener=cast.lead)
    other = open_referred(s, wf, cast)
    s.commit()
    TIMERS.sweep_due(s, REMINDER_AT, HANDLER)
    TIMERS.sweep_due(s, local("2025-05-07 09:00"), HANDLER)

    rows = outbox(s)
    assert {m.template for m in rows} == {"reminder", "overdue", "escalation_prompt"}
    assert {m.context["reference"] for m in rows} == {case.reference, other.reference}
    canaries = [CANARY_NAME, CANARY_NUMBER, CANARY_DOB, CANARY_DESCRIPTION, "CANARYTEXT42", "Zebediah",
                "Canarywhistle"]
    for m in rows:
        text = json.dumps([m.idempotency_key, m.channel, m.recipient, m.template, m.context, m.last_error])
        for canary in canaries:
            assert canary.lower() not in text.lower(), (canary, m.idempotency_key)
    s.close()


# -- moving deadlines --------------------------------------------------------------------------------


def snapshot(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "deadlines": [tuple(r) for r in database.raw("SELECT * FROM wf_deadlines ORDER BY id")],
        "timers": [tuple(r) for r in database.raw("SELECT * FROM wf_timers ORDER BY id")],
        "history": [tuple(r) for r in database.raw("SELECT id FROM wf_history ORDER BY id")],
    }


def test_moving_a_deadline_is_refused_and_nothing_written_when_the_user_is_not_a_lead_on_the_case(
        database: Database, wf: Engine, cast: Cast) -> None:
    s = database.session()
    case = open_referred(s, wf, cast)
    s.commit()
    before = snapshot(database)
    now = local("2025-04-22 10:00")
    later = local("2025-05-20 17:00")
    operations = {
        "extend": lambda who, name: extend_deadline(s, wf, TIMERS, who, case, name, later, "more time", now),
        "pause": lambda who, name: pause_deadline(s, wf, TIMERS, who, case, name, "interpreter", now),
        "resume": lambda who, name: resume_deadline(s, wf, TIMERS, who, case, name, "found", now),
    }

    for op, call in operations.items():
        # Assigned staff see the case but may not move its deadlines; nor may an auditor.
        for who in (cast.staff, cast.auditor):
            with pytest.raises(NotAllowed, match="only a lead of a body on this case"):
                call(who, "establishment_response")
        # Users who cannot see the case learn nothing about it, not even that it exists.
        for who in (cast.other_staff, cast.outside_lead, cast.admin):
            with pytest.raises(CaseNotFound, match=f"no case {case.reference}"):
                call(who, "establishment_response")
        with pytest.raises(InvalidInput) as err:
            call(cast.lead, "triage_decision")  # a deadline of a stage already left
        assert err.value.errors == {"deadline": f"'triage_decision' is not a running deadline of {case.reference}"
                                                " (running: establishment_response)"}, op
    s.commit()
    s.close()
    assert snapshot(database) == before


def test_leads_of_the_owning_and_party_bodies_move_a_deadline_and_the_reminder_follows_when_they_extend(
        database: Database, wf: Engine, cast: Cast) -> None:
    s = database.session()
    case = open_referred(s, wf, cast)
    s.commit()
    new_due = local("2025-05-13 17:00")

    row = extend_deadline(s, wf, TIMERS, cast.party_lead, case, "establishment_response", new_due,
                          "The governor asked for a week", local("2025-04-22 10:00"))
    s.commit()
    assert (row.due_at, row.generation) == (new_due, 2)
    event = s.scalars(select(HistoryEvent).where(HistoryEvent.instance_id == case.instance_id)
                      .order_by(HistoryEvent.seq.desc())).first()
    assert event is not None
    assert (event.kind, event.actor_id, event_data(cipher(), s, event.instance_id, event.seq, event.data)["reason"]
            ) == ("deadline_extended", str(cast.party_lead.id), "The governor asked for a week")
    assert is_sealed(event.data["reason"])  # a typed reason is sealed with the case's key in history

    pause_deadline(s, wf, TIMERS, cast.lead, case, "establishment_response", "Lockdown at the prison",
                   local("2025-04-23 09:00"))
    s.commit()
    paused = running(s, case)["establishment_response"]
    assert paused.status == "paused"
    pending = select(TimerRow).where(TimerRow.deadline_id == paused.id, TimerRow.status == "pending")
    assert s.scalars(pending).all() == []

    # Paused Wed 23 Apr 09:00, resumed Fri 25 Apr 12:00: the working days of 23 and 24 Apr ended.
    resume_deadline(s, wf, TIMERS, cast.lead, case, "establishment_response", "Lockdown over",
                    local("2025-04-25 12:00"))
    s.commit()
    assert running(s, case)["establishment_response"].due_at == local("2025-05-15 17:00")

    TIMERS.sweep_due(s, local("2025-05-12 09:00"), HANDLER)  # 3 WD before Thu 15 May
    reminders = outbox(s)
    assert [(m.template, m.channel, m.recipient) for m in reminders] == [
        ("reminder", "inapp", str(cast.staff.id)), ("reminder", "log", cast.staff.email)]
    assert {m.context["due_text"] for m in reminders} == {"Thu 15 May 2025, 17:00"}
    s.close()


def test_triage_gets_a_new_deadline_counted_from_the_reopening_when_a_closed_case_is_reopened(
        database: Database, wf: Engine, cast: Cast) -> None:
    s = database.session()
    case = open_case(s, wf, cipher(), cast.lead, OPENED, case_data(cast.establishment))
    advance_case(s, wf, cast.lead, case, "record_consent_and_risk", CONSENT, CONSENTED)
    advance_case(s, wf, cast.lead, case, "withdraw", {}, local("2025-07-01 10:00"))
    reopened = local("2025-08-01 10:00")  # a Friday in England

    advance_case(s, wf, cast.lead, case, "reopen", {"reason": "The person asked us to go on."}, reopened)
    s.commit()

    triage = running(s, case)["triage_decision"]
    assert triage.due_at == local("2025-08-05 17:00")  # 2 working days after the reopening, not after receipt
    assert triage.status == "open"
    assert TIMERS.sweep_due(s, reopened + timedelta(hours=1), HANDLER).fired == 0  # nothing overdue at once
    s.close()
