"""Keyword factories for tests (make_user(role=...), make_case(...)). Real rows, real database."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from reprisals.crypto import Cipher
from reprisals.models import Body, Establishment, EstablishmentType, Nation, Role, User
from reprisals.reference import PROTOCOL_BODIES
from reprisals.services import advance_case, open_case
from workflow.engine import Engine

BODIES = dict(PROTOCOL_BODIES)  # in every database already (create_all and the migrations insert them)
# Canary values: tests assert these never appear where identity must not be.
CANARY_NAME = "Zebediah Canarywhistle"
CANARY_NUMBER = "A9999ZZ"
CANARY_DOB = "1987-03-14"
CANARY_DESCRIPTION = "Kitchen job lost after speaking to inspectors CANARYTEXT42"
TEST_KEY = "x8QmE9Yy1m4tYjq3yQeYk0y7kq8sFJt9Xw3V2B1n4Lg="
TEST_PSEUDONYM_KEY = "test-pseudonym-key-not-for-real-use-0123456789"

_seq = itertools.count(1)


def cipher(*keys: str) -> Cipher:
    return Cipher(list(keys) or [TEST_KEY], pseudonym_key=TEST_PSEUDONYM_KEY)


def seed_bodies(session: Session) -> None:
    for code, name in BODIES.items():
        if session.get(Body, code) is None:
            session.add(Body(code=code, name=name))
    session.flush()


def make_establishment(session: Session, *, name: str | None = None, nation: Nation = Nation.ENGLAND,
                       type: EstablishmentType = EstablishmentType.PRISON, operator: str = "HMPPS") -> Establishment:
    e = Establishment(name=name or f"HMP Test {next(_seq)}", type=type, nation=nation, operator=operator)
    session.add(e)
    session.flush()
    return e


def make_user(session: Session, *, role: Role = Role.STAFF, body: str | None = "IMB", name: str | None = None,
              active: bool = True, confirmed: bool = True) -> User:
    """A user; ``confirmed`` as the operator's accounts are (``confirmed=False``: waiting for a lead)."""
    seed_bodies(session)
    n = next(_seq)
    created = datetime(2025, 1, 1, tzinfo=UTC)
    u = User(email=f"user{n}@example.test", name=name or f"User {n}", role=role,
             body_code=None if role is Role.ADMIN else body, password_hash="!", active=active,
             created_at=created, confirmed_at=created if confirmed else None)
    session.add(u)
    session.flush()
    return u


def case_data(establishment: Establishment, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "establishment_id": establishment.id,
        "received_at": "2025-04-16T10:00:00+01:00",
        "channel": "imb_application",
        "original_contact_date": "2025-04-07",
        "age_group": "adult",
        "sanction_types": ["loss_of_job_or_activity"],
        "detriment_dates": ["2025-04-08"],
        "description": CANARY_DESCRIPTION,
        "risk": "standard",
        "party_bodies": ["HMIP"],
        "detainee_name": CANARY_NAME,
        "detainee_number": CANARY_NUMBER,
        "detainee_date_of_birth": CANARY_DOB,
    }
    data.update(overrides)
    return data


def make_case(session: Session, engine: Engine, *, actor: User, now: datetime,
              establishment: Establishment | None = None,
              cipher_: Cipher | None = None, **overrides: Any):  # type: ignore[no-untyped-def]
    est = establishment or make_establishment(session)
    return open_case(session, engine, cipher_ or cipher(), actor, now, case_data(est, **overrides))


CONSENT = {"consent": "full", "risk": "standard"}
REFER = {"recipients": ["head_of_establishment"]}
RESPONSE = {"responder": "establishment", "summary": "Job restored."}
ACCEPT = {"proposed_finding": "substantiated", "assessment": "Sanction confirmed."}
FOLLOW_UP = {"summary": "Back at work."}
CLOSE = {"outcome": "substantiated", "summary": "Confirmed."}


def walk_to(session: Session, engine: Engine, case, stage: str, *, lead: User, second_lead: User,  # type: ignore[no-untyped-def]
            now: datetime) -> None:
    """Advance a fresh case along the happy path until it reaches ``stage``."""
    path = [("record_consent_and_risk", CONSENT, lead, "triage"), ("refer", REFER, lead, "referred"),
            ("record_response", RESPONSE, lead, "assessment"), ("accept_response", ACCEPT, lead, "follow_up"),
            ("complete_follow_up", FOLLOW_UP, lead, "closure_review"), ("close", CLOSE, second_lead, "closed")]
    for trigger, fields, who, reached in path:
        if case.stage == stage:
            return
        advance_case(session, engine, who, case, trigger, fields, now)
        assert case.stage == reached
