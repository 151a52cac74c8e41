"""The letters a case sent (referrals, escalations) and the responses it received, as one list for the
case page, ``reprisals case show`` and the API.

They are the ``case_contacts`` rows ``services._sync_case`` writes for each referral, escalation and
response. A letter's response was due by the response deadline its action started (the ``wf_deadlines``
row of that stage entry: ``entry_seq`` is the letter's history event), and was received on the date of
the next response recorded after it.

A recipient is a choice of the protocol (``head_of_establishment``, ``youth_custody_service``…: shown in
words) or text a person typed (version 1's "Escalated to"; for ``other`` in later versions, ``_sync_case``
stores what was typed for it): shown as typed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from reprisals.models import Case, CaseContact
from workflow.models import DeadlineRow, HistoryEvent

# The deadlines that wait for the answer to a letter, by the names the protocol files give them; a stage
# entry with none of these falls back to a deadline whose name ends in "response".
RESPONSE_DEADLINES = ("establishment_response", "urgent_written_response", "level_1_response", "level_2_response")

RECIPIENT_WORDS = {
    "head_of_establishment": "Head of establishment",
    "hmpps": "HMPPS",
    "youth_custody_service": "Youth Custody Service",
    "home_office_immigration_enforcement": "Home Office Immigration Enforcement",
    "pecs_contract_management": "PECS contract management",
    "department": "Department",
    "other": "Other",
}
# A recipient typed by hand may name a person: outside an unlock window (``reprisals.sensitive``) it is withheld.
TYPED_HIDDEN = "Someone named by hand (shown after a reason is given)"
RESPONDER_WORDS = {"establishment": "The establishment", "central_authority": "The central authority",
                   "department": "The department"}
KIND_WORDS = {"referral": "Referral", "escalation": "Escalation", "response": "Response"}
LONDON = ZoneInfo("Europe/London")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


def uk_date(when: date | datetime | None) -> str:
    """'Tue 6 May 2025' (a moment: its day in UK time); '' for none."""
    if when is None:
        return ""
    day = when.astimezone(LONDON).date() if isinstance(when, datetime) else when
    return f"{DAYS[day.weekday()]} {day.day} {MONTHS[day.month - 1]} {day.year}"


@dataclass(frozen=True)
class Letter:
    kind: str  # referral | escalation | response
    level: int  # 0 for a referral; 1 or 2 for an escalation
    recipients: tuple[str, ...]  # choice codes, or text as typed
    on: date  # the day it was sent or received (UK)
    history_seq: int  # the action that recorded it
    responder: str | None = None  # for a response: who it came from (a choice code), if recorded
    response_due: datetime | None = None  # for a letter: the due moment of its response deadline
    response_received: date | None = None  # for a letter: the day of the next response, if any
    hidden: bool = False  # recipients typed by hand withheld (the reader has not unlocked the case)

    @property
    def is_letter(self) -> bool:
        return self.kind != "response"

    @property
    def kind_words(self) -> str:
        """'Referral', 'Escalation (level 1)', 'Response'."""
        words = KIND_WORDS.get(self.kind, self.kind.replace("_", " ").capitalize())
        return f"{words} (level {self.level})" if self.kind == "escalation" and self.level else words

    @property
    def recipient_words(self) -> list[str]:
        """Each recipient for people: a choice in words, typed text as typed (escape it when showing it)."""
        return [RECIPIENT_WORDS.get(r, r) if r in RECIPIENT_WORDS or not self.hidden else TYPED_HIDDEN
                for r in self.recipients]

    def as_dict(self) -> dict[str, object]:
        """What the command's --json and the API give: codes and typed text (null when withheld), dates, the
        due moment."""
        recipients = [r if r in RECIPIENT_WORDS or not self.hidden else None for r in self.recipients]
        return {"kind": self.kind, "level": self.level, "recipients": recipients, "on": self.on,
                "response_due": self.response_due, "response_received": self.response_received,
                "responder": self.responder, "history_seq": self.history_seq}

    @property
    def responder_words(self) -> str | None:
        if self.responder is None:
            return None
        return RESPONDER_WORDS.get(self.responder, self.responder.replace("_", " ").capitalize())


def _response_deadline(rows: list[DeadlineRow]) -> DeadlineRow | None:
    named = sorted((r for r in rows if r.name in RESPONSE_DEADLINES), key=lambda r: RESPONSE_DEADLINES.index(r.name))
    if named:
        return named[0]
    return next((r for r in sorted(rows, key=lambda r: r.id) if r.name.endswith("response")), None)


HIDDEN_RECIPIENT = "Another recipient, named by hand (show identity to read it)"


def letters_of(session: Session, case: Case, reveal: Callable[[CaseContact, object], str] | None = None
               ) -> list[Letter]:
    """The case's letters and responses in the order they were recorded (three queries). A recipient typed
    by hand is sealed with the case's key: ``reveal`` (for a viewer who may read it) gives its text, else it
    is ``HIDDEN_RECIPIENT``."""

    def recipients(c: CaseContact) -> tuple[str, ...]:
        return tuple(r if isinstance(r, str) else (reveal(c, r) if reveal is not None else HIDDEN_RECIPIENT)
                     for r in c.recipients)

    contacts = list(session.scalars(select(CaseContact).where(CaseContact.case_id == case.id)
                                    .order_by(CaseContact.history_seq, CaseContact.id)))
    if not contacts:
        return []
    seqs = {c.history_seq for c in contacts}
    fields: dict[int, dict[str, object]] = {}
    for seq, data in session.execute(select(HistoryEvent.seq, HistoryEvent.data).where(
            HistoryEvent.instance_id == case.instance_id, HistoryEvent.seq.in_(seqs))):
        given = (data or {}).get("fields") if isinstance(data, dict) else None
        fields[seq] = given if isinstance(given, dict) else {}
    deadlines: dict[int, list[DeadlineRow]] = {}
    for row in session.scalars(select(DeadlineRow).where(DeadlineRow.instance_id == case.instance_id,
                                                         DeadlineRow.entry_seq.in_(seqs))):
        deadlines.setdefault(row.entry_seq, []).append(row)

    responses = [c for c in contacts if c.kind == "response"]
    out: list[Letter] = []
    for c in contacts:
        given = fields.get(c.history_seq, {})
        if c.kind == "response":
            responder = given.get("responder")
            out.append(Letter(kind=c.kind, level=c.level, recipients=recipients(c), on=c.on,
                              history_seq=c.history_seq,
                              responder=responder if isinstance(responder, str) and responder else None))
            continue
        due = _response_deadline(deadlines.get(c.history_seq, []))
        answer = next((r for r in responses if r.history_seq > c.history_seq), None)
        out.append(Letter(kind=c.kind, level=c.level, recipients=recipients(c), on=c.on,
                          history_seq=c.history_seq, response_due=due.due_at if due is not None else None,
                          response_received=answer.on if answer is not None else None))
    return out
