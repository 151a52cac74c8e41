"""Demo data: bodies, fictional establishments in all four nations, users of every role, and a dozen
cases in various stages. Everything here is invented; the people named do not exist."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reprisals.crypto import Cipher
from reprisals.models import Case, Establishment, EstablishmentType, Nation, Role, User
from reprisals.passwords import hash_password
from reprisals.protocol import required_copies
from reprisals.reference import seed_protocol_bodies
from reprisals.services import advance_case, open_case
from workflow.engine import Engine

DEMO_PASSWORD = "reprisals-demo-2026"  # noqa: S105 - printed for the demo on purpose

ESTABLISHMENTS = [
    ("HMP Thornbury Fen", EstablishmentType.PRISON, Nation.ENGLAND, "HMPPS"),
    ("Kestrel House Immigration Removal Centre", EstablishmentType.IMMIGRATION_REMOVAL_CENTRE, Nation.ENGLAND,
     "Halden Secure Services"),
    ("HMYOI Cwm Dulais", EstablishmentType.YOUNG_OFFENDER_INSTITUTION, Nation.WALES, "HMPPS"),
    ("HMP Glenbrae", EstablishmentType.PRISON, Nation.SCOTLAND, "Scottish Prison Service"),
    ("Ardmore Short-Term Holding Facility", EstablishmentType.SHORT_TERM_HOLDING_FACILITY, Nation.SCOTLAND,
     "Home Office"),
    ("HMP Loughmore", EstablishmentType.PRISON, Nation.NORTHERN_IRELAND, "Northern Ireland Prison Service"),
    ("East of England escort contract", EstablishmentType.ESCORT, Nation.ENGLAND, "PECS contractor"),
]

USERS = [
    ("admin@demo.test", "Robin Admin", Role.ADMIN, None),
    ("lead.imb@demo.test", "Alex Morgan", Role.LEAD, "IMB"),
    ("lead2.imb@demo.test", "Sam Patel", Role.LEAD, "IMB"),
    ("lead.hmip@demo.test", "Jordan Ellis", Role.LEAD, "HMIP"),
    ("lead.ppo@demo.test", "Casey Byrne", Role.LEAD, "PPO"),
    ("lead.lo@demo.test", "Morgan Hughes", Role.LEAD, "LO"),
    ("staff.imb@demo.test", "Priya Shah", Role.STAFF, "IMB"),
    ("staff2.imb@demo.test", "Tom Okafor", Role.STAFF, "IMB"),
    ("staff.hmip@demo.test", "Eilidh Fraser", Role.STAFF, "HMIP"),
    ("auditor.imb@demo.test", "Dana Whitfield", Role.AUDITOR, "IMB"),
]

CONSENT = {"consent": "full", "risk": None}
RESPONSE = {"responder": "establishment", "summary": "The governor has responded."}
ACCEPT = {"proposed_finding": "substantiated", "assessment": "The response confirms the sanction."}
FOLLOW_UP = {"summary": "Spoke with the person; the situation is resolved."}
CLOSE = {"outcome": "substantiated", "summary": "Finding confirmed by a second lead."}

# (establishment index, risk, sanction, age group, days ago received, stage to reach, description)
CASES: list[tuple[int, str, str, str, int, str, str]] = [
    (0, "standard", "loss_of_job_or_activity", "adult", 1, "reported", "Lost kitchen job after inspection."),
    (3, "high", "restricted_visits", "adult", 2, "reported", "Visits cut after speaking to the board."),
    (1, "standard", "transfer", "adult", 3, "triage", "Moved to another wing after a survey."),
    (5, "standard", "verbal_abuse_or_threats", "adult", 4, "triage", "Threatened by an officer."),
    (0, "standard", "incentive_downgrade", "adult", 9, "referred", "Incentive level lowered."),
    (2, "urgent", "verbal_abuse_or_threats", "child", 2, "referred", "Threats after an interview."),
    (4, "high", "segregation", "adult", 6, "referred", "Placed in segregation after an application."),
    (0, "standard", "retaliatory_search", "adult", 25, "escalated", "Cell searched repeatedly."),
    (3, "standard", "recategorisation", "adult", 20, "assessment", "Re-categorised after a complaint."),
    (5, "standard", "restricted_phone_or_correspondence", "adult", 30, "follow_up", "Phone access cut."),
    (1, "standard", "worse_accommodation", "adult", 40, "closure_review", "Moved to a worse room."),
    (6, "high", "physical_abuse", "adult", 60, "closed", "Rough handling during an escort."),
]

# Pseudonyms to look at: the closed case is the same person as the second (name and number); the sixth has the
# fourth's name with another number: "possibly the same person", for a lead to confirm or dismiss.
SAME_PERSON: dict[int, dict[str, str]] = {11: {"detainee_name": "Demo Person 2", "detainee_number": "D1001"},
                                           5: {"detainee_name": "Demo Person 4", "detainee_number": "D9999"}}

PATH = [("record_consent_and_risk", "triage"), ("refer", "referred"), ("record_response", "assessment"),
        ("accept_response", "follow_up"), ("complete_follow_up", "closure_review"), ("close", "closed")]


@dataclass(frozen=True)
class DemoUser:
    email: str
    name: str
    role: str
    body: str | None


def has_data(session: Session) -> bool:
    """Users or establishments exist (an install being set up has no users yet but may have imported its
    establishments). The protocol's bodies, which every upgraded database holds, are not data."""
    return bool(session.scalar(select(func.count()).select_from(User))
                or session.scalar(select(func.count()).select_from(Establishment)))


def load_demo(session: Session, engine: Engine, cipher: Cipher, now: datetime) -> list[DemoUser]:
    """Load the demo set into an empty database (the caller commits). The protocol's bodies are
    added only if missing (`reprisals db upgrade` has inserted them)."""
    seed_protocol_bodies(session)
    establishments = [Establishment(name=n, type=t, nation=na, operator=o) for n, t, na, o in ESTABLISHMENTS]
    session.add_all(establishments)
    hashed = hash_password(DEMO_PASSWORD)
    # Confirmed as made, like the operator's accounts (`reprisals users add`): the demo is loaded on the server.
    users = {email: User(email=email, name=name, role=role, body_code=body, password_hash=hashed, active=True,
                         created_at=now, confirmed_at=now) for email, name, role, body in USERS}
    session.add_all(users.values())
    session.flush()
    lead, lead2 = users["lead.imb@demo.test"], users["lead2.imb@demo.test"]
    staff = [users["staff.imb@demo.test"], users["staff2.imb@demo.test"]]
    for i, (est, risk, sanction, age, days, stage, text) in enumerate(CASES):
        received = now - timedelta(days=days)
        data: dict[str, Any] = {
            "establishment_id": establishments[est].id, "received_at": received.isoformat(),
            "channel": "imb_application", "age_group": age, "sanction_types": [sanction],
            "description": text, "risk": risk, "party_bodies": ["HMIP"] if i % 2 == 0 else [],
            "detainee_name": f"Demo Person {i + 1}", "detainee_number": f"D{1000 + i}",
            "assigned_user_id": staff[i % 2].id,
        }
        data.update(SAME_PERSON.get(i, {}))
        case = open_case(session, engine, cipher, lead, now, data)
        _walk(session, engine, case, stage, lead, lead2, now, risk)
    session.flush()
    return [DemoUser(email, name, role.value, body) for email, name, role, body in USERS]


def _walk(session: Session, engine: Engine, case: Case, stage: str, lead: User, lead2: User, now: datetime,
          risk: str) -> None:
    # The copies the protocol's rules require for this case (the Youth Custody Service for a child…).
    copies = [r.recipient for r in required_copies(engine.spec_of(case.instance), case.instance.variables)]
    fields: dict[str, dict[str, Any]] = {
        "record_consent_and_risk": {**CONSENT, "risk": risk},
        "refer": {"recipients": ["head_of_establishment", *copies]},
        "record_response": RESPONSE,
        "accept_response": ACCEPT,
        "complete_follow_up": FOLLOW_UP,
        "close": CLOSE,
    }
    for trigger, reached in PATH:
        if case.stage == stage:
            return
        if stage == "escalated" and case.stage == "referred":
            advance_case(session, engine, lead, case, "escalate",
                         {"reason": "overdue", "recipient": "hmpps", "copies": copies}, now)
            return
        advance_case(session, engine, lead2 if trigger == "close" else lead, case, trigger, fields[trigger], now)
        assert case.stage == reached
