"""Actions dated when they happened (decision 17): deadlines, closing and the reopen window run from the
moment the lead gives, not from when it was typed in; refusals name the field and write nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from reprisals.errors import InvalidInput, NotAllowed
from reprisals.models import Case, CaseContact
from reprisals.protocol import reopen_until
from reprisals.services import advance_case, open_case, redate_action
from tests.conftest import Database
from tests.factories import CONSENT, REFER, case_data, cipher, walk_to
from tests.reprisals.conftest import Cast, count_rows
from workflow.deadlines import Timers
from workflow.engine import Engine
from workflow.errors import GuardFailed, MissingFields
from workflow.history import verify
from workflow.models import DeadlineRow, HistoryEvent, TimerRow

LONDON = ZoneInfo("Europe/London")
RECEIVED = "2025-04-16T10:00+01:00"  # Wednesday 16 April 2025, 10:00 UK time
T0 = datetime(2025, 4, 16, 9, 30, tzinfo=UTC)  # recorded half an hour later


def local(at: datetime) -> datetime:
    return at.astimezone(LONDON)


def opened(s: Session, wf: Engine, cast: Cast, version: int | None = None, **overrides: Any) -> Case:
    case = open_case(s, wf, cipher(), cast.staff, T0, case_data(cast.establishment, received_at=RECEIVED,
                                                                    **overrides), spec_version=version)
    advance_case(s, wf, cast.lead, case, "record_consent_and_risk", CONSENT, T0)
    return case


def deadline(s: Session, case: Case, name: str) -> DeadlineRow:
    return s.scalars(select(DeadlineRow).where(DeadlineRow.instance_id == case.instance_id,
                                               DeadlineRow.name == name)).one()


def timers(s: Session, row: DeadlineRow) -> list[tuple[str, str]]:
    return sorted((t.kind, t.status) for t in s.scalars(select(TimerRow).where(TimerRow.deadline_id == row.id)))


def test_a_letter_recorded_days_later_gets_the_deadline_of_the_day_it_went(
        session: Session, wf: Engine, cast: Cast) -> None:
    # On version 1 (whose referral has a date field, sent_on) and version 2 alike.
    late, on_the_day, v2 = opened(session, wf, cast, 1), opened(session, wf, cast, 1), opened(session, wf, cast)
    # The letter went on Thursday 17 April; one lead records it the same day at noon, the other a week later.
    advance_case(session, wf, cast.lead, on_the_day, "refer", REFER, datetime(2025, 4, 17, 11, 0, tzinfo=UTC))
    recorded = datetime(2025, 4, 24, 15, 0, tzinfo=UTC)
    event = advance_case(session, wf, cast.lead, late, "refer", REFER, recorded, occurred_at="2025-04-17")
    advance_case(session, wf, cast.lead, v2, "refer", REFER, recorded, occurred_at="2025-04-17")
    assert v2.instance.spec_version == 2 and deadline(session, v2, "establishment_response").due_at == (
        deadline(session, late, "establishment_response").due_at)

    due = deadline(session, late, "establishment_response").due_at
    assert due == deadline(session, on_the_day, "establishment_response").due_at
    # 10 working days in England from Thursday 17 April 2025 (Good Friday and Easter Monday, then the
    # early May bank holiday, are not working days): the end of Tuesday 6 May.
    assert local(due).date().isoformat() == "2025-05-06"
    # A bare date is 12:00 that day; the event was recorded when it was, and says when it happened.
    assert event.at == recorded and event.data["occurred_at"] == "2025-04-17T11:00:00+00:00"
    assert late.instance.stage_entered_at == datetime(2025, 4, 17, 11, 0, tzinfo=UTC)
    contact = session.scalars(select(CaseContact).where(CaseContact.case_id == late.id)).one()
    assert contact.on.isoformat() == "2025-04-17"  # version 1's sent_on is that day
    assert event.data["fields"]["sent_on"] == "2025-04-17"
    # The triage deadline closed when the letter went, not when it was recorded: met.
    triage = deadline(session, late, "triage_decision")
    assert triage.closed_at == datetime(2025, 4, 17, 11, 0, tzinfo=UTC) and triage.closed_at <= triage.due_at
    session.commit()
    assert verify(session).ok


def test_reminders_already_past_are_never_sent_and_a_deadline_already_past_is_overdue_at_once(
        session: Session, wf: Engine, cast: Cast) -> None:
    reminded, overdue = opened(session, wf, cast), opened(session, wf, cast)
    # Recorded on Friday 2 May: the 3-working-day reminder (end of Wednesday 30 April) is past, the due time not.
    advance_case(session, wf, cast.lead, reminded, "refer", REFER, datetime(2025, 5, 2, 9, 0, tzinfo=UTC),
                 occurred_at="2025-04-17")
    row = deadline(session, reminded, "establishment_response")
    assert row.status == "open" and timers(session, row) == [("due", "pending")]
    # Recorded on Wednesday 7 May: already due on the 6th. Overdue at once; its notices go at the next sweep.
    advance_case(session, wf, cast.lead, overdue, "refer", REFER, datetime(2025, 5, 7, 9, 0, tzinfo=UTC),
                 occurred_at="2025-04-17T10:00")
    row = deadline(session, overdue, "establishment_response")
    assert row.status == "overdue" and timers(session, row) == [("due", "pending")]
    due_timer = session.scalars(select(TimerRow).where(TimerRow.deadline_id == row.id)).one()
    assert due_timer.available_at <= datetime(2025, 5, 7, 9, 0, tzinfo=UTC)  # the next sweep takes it


@pytest.mark.parametrize(("occurred_at", "message"), [
    ("2025-04-18T10:00", "must not be in the future"),
    ("2025-04-16T10:15", "must not be before the previous action, which happened at 16 April 2025, 10:30"),
    ("2025-04-15", "must not be before the case was received (16 April 2025, 10:00)"),
    ("17/04/2025", "must be a date, or a date and time, like 2025-04-17"),
    ("2025-03-30T01:30", "did not happen in UK time"),
], ids=["future", "before-previous", "before-receipt", "not-a-date", "skipped-hour"])
def test_a_moment_that_cannot_be_is_refused_naming_the_field_and_nothing_is_written(
        database: Database, wf: Engine, cast: Cast, occurred_at: str, message: str) -> None:
    s = database.session()
    case = opened(s, wf, cast)
    s.commit()
    before = count_rows(database, ("wf_history", "wf_deadlines", "wf_timers", "case_contacts"))
    with pytest.raises(MissingFields) as err:
        advance_case(s, wf, cast.lead, case, "refer", REFER, datetime(2025, 4, 17, 12, 0, tzinfo=UTC),
                     occurred_at=occurred_at)
    assert message in err.value.errors["occurred_at"], err.value.errors
    s.rollback()
    s.close()
    assert count_rows(database, ("wf_history", "wf_deadlines", "wf_timers", "case_contacts")) == before


def test_an_urgent_case_needs_a_time_and_a_date_field_must_agree_with_the_moment(
        session: Session, wf: Engine, cast: Cast) -> None:
    case = open_case(session, wf, cipher(), cast.staff, T0,
                     case_data(cast.establishment, received_at=RECEIVED, risk="urgent"), spec_version=1)
    advance_case(session, wf, cast.lead, case, "record_consent_and_risk", {**CONSENT, "risk": "urgent"}, T0)
    later = datetime(2025, 4, 17, 12, 0, tzinfo=UTC)
    with pytest.raises(MissingFields) as err:
        advance_case(session, wf, cast.lead, case, "refer", REFER, later, occurred_at="2025-04-16")
    assert err.value.errors == {"occurred_at": "needs a time as well as a date, like 2025-04-17T10:00: an urgent "
                                               "case counts in hours"}
    with pytest.raises(MissingFields) as err:
        advance_case(session, wf, cast.lead, case, "refer", {**REFER, "sent_on": "2025-04-16"}, later,
                     occurred_at="2025-04-17T09:00")
    assert err.value.errors == {"sent_on": "must be the day the action happened (17 April 2025); leave it out, "
                                           "or give the same day"}
    with pytest.raises(MissingFields) as err:
        advance_case(session, wf, cast.lead, case, "refer", {**REFER, "sent_on": "2025-11-20"}, later)
    assert err.value.errors == {"sent_on": "must be today or in the past"}  # was accepted, and moved nothing
    assert case.stage == "triage"
    # With a time: the 24-hour contact deadline runs from it, to the minute.
    advance_case(session, wf, cast.lead, case, "refer", REFER, later, occurred_at="2025-04-16T15:20")
    assert deadline(session, case, "urgent_contact").due_at == datetime(2025, 4, 17, 14, 20, tzinfo=UTC)


def test_two_actions_of_one_day_given_as_dates_keep_their_order(session: Session, wf: Engine, cast: Cast) -> None:
    case = open_case(session, wf, cipher(), cast.staff, T0, case_data(cast.establishment, received_at=RECEIVED))
    recorded = datetime(2025, 4, 22, 9, 0, tzinfo=UTC)
    advance_case(session, wf, cast.lead, case, "record_consent_and_risk", CONSENT, recorded,
                 occurred_at="2025-04-17T16:45")
    event = advance_case(session, wf, cast.lead, case, "refer", REFER, recorded, occurred_at="2025-04-17")
    assert event.data["occurred_at"] == "2025-04-17T15:45:00+00:00"  # the previous action's moment, not noon


def test_closing_and_the_six_month_reopen_window_run_from_when_it_closed(
        database: Database, wf: Engine, cast: Cast) -> None:
    s = database.session()
    case = open_case(s, wf, cipher(), cast.staff, T0, case_data(cast.establishment, received_at=RECEIVED))
    walk_to(s, wf, case, "closure_review", lead=cast.lead, second_lead=cast.second_lead, now=T0)
    # Closed on Sunday 31 August 2025 at 14:00, recorded on 3 September.
    advance_case(s, wf, cast.second_lead, case, "close", {"outcome": "substantiated", "summary": "Confirmed."},
                 datetime(2025, 9, 3, 9, 0, tzinfo=UTC), occurred_at="2025-08-31T14:00")
    assert case.closed_at == datetime(2025, 8, 31, 13, 0, tzinfo=UTC)
    assert case.instance.variables["closed_at"] == "2025-08-31T13:00:00+00:00"
    # Six calendar months: 31 August to the last day of February (no 31st), same time of day.
    assert reopen_until(case.closed_at) == datetime(2026, 2, 28, 14, 0, tzinfo=LONDON)
    s.commit()
    at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    with pytest.raises(GuardFailed) as err:
        advance_case(s, wf, cast.lead, case, "reopen", {"reason": "New information."}, at,
                     occurred_at="2026-02-28T14:01")
    assert "could be reopened until 28 February 2026" in err.value.reason
    s.rollback()
    advance_case(s, wf, cast.lead, case, "reopen", {"reason": "New information."}, at,
                 occurred_at="2026-02-28T14:00")
    assert case.stage == "triage" and case.closed_at is None
    # Back in triage, its new triage clock runs from the reopening, not from when it was recorded.
    triage = s.scalars(select(DeadlineRow).where(DeadlineRow.instance_id == case.instance_id,
                                                 DeadlineRow.name == "triage_decision")
                       .order_by(DeadlineRow.id.desc())).first()
    assert triage is not None and triage.anchor_at == datetime(2026, 2, 28, 14, 0, tzinfo=UTC)
    s.commit()
    events = s.scalars(select(HistoryEvent).where(HistoryEvent.instance_id == case.instance_id)
                       .order_by(HistoryEvent.seq)).all()
    assert events[-1].at == at and events[-1].data["occurred_at"] == "2026-02-28T14:00:00+00:00"
    s.close()


def test_a_mis_dated_action_is_corrected_by_a_lead_and_its_deadlines_are_recomputed(
        database: Database, wf: Engine, cast: Cast) -> None:
    timers = Timers()  # the rules the protocol engine's timers follow (the same default working day)
    s = database.session()
    case = opened(s, wf, cast)
    recorded = datetime(2025, 4, 24, 15, 0, tzinfo=UTC)
    refer = advance_case(s, wf, cast.lead, case, "refer", REFER, recorded)  # typed in as "now": wrong
    wrong_due = deadline(s, case, "establishment_response").due_at
    s.commit()

    fixed_at = datetime(2025, 4, 25, 9, 0, tzinfo=UTC)
    correction = redate_action(s, wf, timers, cast.lead, case, refer.seq, "2025-04-17",
                               "The letter is dated 17 April.", fixed_at)
    s.commit()
    row = deadline(s, case, "establishment_response")
    assert local(row.due_at).date().isoformat() == "2025-05-06" and row.due_at < wrong_due
    assert row.generation == 2 and timers_of(s, row) == [("due", "cancelled"), ("due", "pending"),
                                                         ("reminder", "cancelled"), ("reminder", "pending")]
    assert deadline(s, case, "triage_decision").closed_at == datetime(2025, 4, 17, 11, 0, tzinfo=UTC)
    contact = s.scalars(select(CaseContact).where(CaseContact.case_id == case.id)).one()
    assert contact.on.isoformat() == "2025-04-17"
    assert (correction.kind, correction.corrects_seq, correction.at) == ("action_redated", refer.seq, fixed_at)
    assert correction.data["corrected_to"] == "2025-04-17T11:00:00+00:00" and correction.data["was"] == (
        recorded.isoformat())
    assert case.instance.acted_at == datetime(2025, 4, 17, 11, 0, tzinfo=UTC)
    assert verify(s).ok  # the history was added to, never edited

    # Refused, naming the field, nothing written.
    advance_case(s, wf, cast.lead, case, "record_response",
                 {"responder": "establishment", "summary": "Job restored."}, fixed_at, occurred_at="2025-04-23")
    s.commit()
    before = count_rows(database, ("wf_history", "wf_deadlines", "wf_timers", "case_contacts"))
    for who, seq, moment, reason, field, message in [
        (cast.lead, refer.seq, "2025-04-15", "x", "occurred_at", "must not be before the action before it"),
        (cast.lead, refer.seq, "2025-04-24", "x", "occurred_at", "must not be after the action after it, which "
                                                                 "happened at 23 April 2025, 12:00"),
        (cast.lead, refer.seq, "2025-04-17", " ", "reason", "is required"),
        (cast.lead, 999, "2025-04-17", "x", "event", "is not an action of this case's history"),
        (cast.lead, correction.seq, "2025-04-17", "x", "event", "is not an action of this case's history"),
    ]:
        with pytest.raises(InvalidInput) as err:
            redate_action(s, wf, timers, who, case, seq, moment, reason, fixed_at)
        assert message in err.value.errors[field], err.value.errors
        s.rollback()
    with pytest.raises(NotAllowed):
        redate_action(s, wf, timers, cast.staff, case, refer.seq, "2025-04-18", "x", fixed_at)
    s.rollback()
    s.close()
    assert count_rows(database, ("wf_history", "wf_deadlines", "wf_timers", "case_contacts")) == before


def timers_of(s: Session, row: DeadlineRow) -> list[tuple[str, str]]:
    return timers(s, row)


def test_a_correction_to_a_bare_date_on_the_day_of_the_action_before_it_means_that_actions_moment(
        database: Database, wf: Engine, cast: Cast) -> None:
    """In the afternoon, "the day of the action before it" is that action's moment, not noon (which would be
    before it and refused)."""
    s = database.session()
    case = open_case(s, wf, cipher(), cast.staff, T0, case_data(cast.establishment, received_at=RECEIVED))
    afternoon = datetime(2025, 4, 16, 15, 0, tzinfo=UTC)  # 16:00 UK time
    advance_case(s, wf, cast.lead, case, "record_consent_and_risk", CONSENT, afternoon)
    refer = advance_case(s, wf, cast.lead, case, "refer", REFER, datetime(2025, 4, 24, 15, 0, tzinfo=UTC))
    s.commit()
    correction = redate_action(s, wf, Timers(), cast.lead, case, refer.seq, "2025-04-16", "sent that day",
                               datetime(2025, 4, 25, 9, 0, tzinfo=UTC))
    assert correction.data["corrected_to"] == afternoon.isoformat()
    s.close()
