"""The letters a case sent and the responses it received (reprisals.letters.letters_of): kinds, levels,
recipients in words or as typed, the due date of the response each letter started, and when it came."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from reprisals.letters import HIDDEN_RECIPIENT, Letter, letters_of
from reprisals.models import Case
from reprisals.sealing import Keyring
from reprisals.services import advance_case, open_case, redate_action
from tests.factories import CONSENT, REFER, RESPONSE, case_data, cipher
from tests.reprisals.conftest import Cast
from workflow.deadlines import Timers
from workflow.engine import Engine
from workflow.spec import FieldType

LONDON = ZoneInfo("Europe/London")
RECEIVED = "2025-04-16T10:00+01:00"  # Wednesday 16 April 2025, 10:00 UK time
T0 = datetime(2025, 4, 16, 9, 30, tzinfo=UTC)


def at(day: str, hour: int = 11) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def opened(s: Session, wf: Engine, cast: Cast, consent: dict[str, str] = CONSENT) -> Case:
    case = open_case(s, wf, cipher(), cast.staff, T0, case_data(cast.establishment, received_at=RECEIVED))
    advance_case(s, wf, cast.lead, case, "record_consent_and_risk", consent, T0)
    return case


def escalation(wf: Engine, case: Case, typed: str) -> dict[str, Any]:
    """Escalation fields naming a recipient typed by the lead: version 1 takes text, later versions a
    choice with 'other' and the text beside it."""
    field = wf.spec_of(case.instance).triggers["escalate"].fields["recipient"]
    if field.type is FieldType.CHOICE:
        return {"reason": "overdue", "recipient": "other", "recipient_other": typed}
    return {"reason": "overdue", "recipient": typed}


def due_day(letter: Letter) -> date | None:
    return letter.response_due.astimezone(LONDON).date() if letter.response_due else None


def test_the_worked_example_a_referral_and_its_response(session: Session, wf: Engine, cast: Cast) -> None:
    case = opened(session, wf, cast)
    assert letters_of(session, case) == []
    advance_case(session, wf, cast.lead, case, "refer", REFER, at("2025-04-17"))
    (letter,) = letters_of(session, case)
    assert (letter.kind, letter.level, letter.recipients, letter.on) == ("referral", 0, ("head_of_establishment",),
                                                                          date(2025, 4, 17))
    # PROTOCOL.md: 10 working days from Thu 17 April 2025 (18 and 21 April, 5 May are bank holidays).
    assert letter.response_due is not None
    assert letter.response_due.astimezone(LONDON) == datetime(2025, 5, 6, 17, 0, tzinfo=LONDON)
    assert letter.response_received is None
    assert (letter.kind_words, letter.recipient_words) == ("Referral", ["Head of establishment"])

    advance_case(session, wf, cast.lead, case, "record_response", RESPONSE, at("2025-05-02"))
    letter, response = letters_of(session, case)
    assert letter.response_received == date(2025, 5, 2)
    assert (response.kind, response.on, response.response_due, response.response_received) == (
        "response", date(2025, 5, 2), None, None)
    assert (response.kind_words, response.responder_words) == ("Response", "The establishment")


def test_escalations_have_their_level_their_typed_recipient_and_their_own_due_dates(
        session: Session, wf: Engine, cast: Cast) -> None:
    case = opened(session, wf, cast)
    advance_case(session, wf, cast.lead, case, "refer", REFER, at("2025-04-17"))
    advance_case(session, wf, cast.lead, case, "escalate", escalation(wf, case, "HMPPS <Area> & Co"),
                 at("2025-05-07"))
    advance_case(session, wf, cast.lead, case, "escalate", escalation(wf, case, "Ministry of Justice"),
                 at("2025-05-22"))
    assert [x.recipient_words for x in letters_of(session, case)][1:] == [[HIDDEN_RECIPIENT]] * 2  # sealed
    keys = Keyring(cipher())
    referral, first, second = letters_of(session, case, lambda c, v: keys.reveal(
        session, case.instance_id, f"contact:{c.history_seq}:recipient", v))
    assert [x.kind_words for x in (referral, first, second)] == ["Referral", "Escalation (level 1)",
                                                                 "Escalation (level 2)"]
    assert first.recipient_words == ["HMPPS <Area> & Co"] and second.recipients == ("Ministry of Justice",)
    # Level 1: 10 working days from Wed 7 May (to Wed 21 May); level 2: 20 from Thu 22 May (26 May is a
    # bank holiday: Fri 20 June).
    assert [due_day(x) for x in (referral, first, second)] == [date(2025, 5, 6), date(2025, 5, 21),
                                                               date(2025, 6, 20)]
    assert all(x.response_received is None for x in (referral, first, second))

    advance_case(session, wf, cast.lead, case, "record_response",
                 {"responder": "department", "summary": "Looked into."}, at("2025-06-02"))
    *letters, response = letters_of(session, case)
    # The response answers every letter still waiting for one.
    assert [x.response_received for x in letters] == [date(2025, 6, 2)] * 3
    assert response.responder_words == "The department"


def test_an_urgent_referral_waits_for_the_written_response_not_the_contact(
        session: Session, wf: Engine, cast: Cast) -> None:
    case = opened(session, wf, cast, consent={"consent": "full", "risk": "urgent"})
    advance_case(session, wf, cast.lead, case, "refer", REFER, datetime(2025, 4, 17, 14, 0, tzinfo=UTC))
    (letter,) = letters_of(session, case)
    # 5 working days from Thu 17 April (not the 24-hour contact).
    assert due_day(letter) == date(2025, 4, 28)


def test_a_corrected_date_moves_the_letter_and_its_response_due(
        session: Session, wf: Engine, cast: Cast) -> None:
    case = opened(session, wf, cast)
    event = advance_case(session, wf, cast.lead, case, "refer", REFER, at("2025-04-24"))
    redate_action(session, wf, Timers(), cast.lead, case, event.seq, "2025-04-17", "Sent a week earlier.",
                  at("2025-04-24", 12))
    (letter,) = letters_of(session, case)
    assert letter.on == date(2025, 4, 17) and due_day(letter) == date(2025, 5, 6)


def test_a_later_versions_choice_of_recipient_is_shown_in_words() -> None:
    letter = Letter(kind="escalation", level=1, recipients=("youth_custody_service", "pecs_contract_management",
                                                            "home_office_immigration_enforcement"),
                    on=date(2025, 9, 2), history_seq=7)
    assert letter.recipient_words == ["Youth Custody Service", "PECS contract management",
                                      "Home Office Immigration Enforcement"]
