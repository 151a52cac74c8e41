"""Fixtures for the domain's tests: one protocol engine per process, a cipher, and a committed cast
of users (the owning body IMB, a party body HMIP, an unrelated body PPO)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from reprisals.crypto import Cipher
from reprisals.models import Establishment, Role, User
from reprisals.protocol import build_engine
from tests.conftest import Database
from tests.factories import cipher, make_establishment, make_user
from workflow.engine import Engine

COUNTED_TABLES = ("cases", "detainees", "wf_instances", "wf_history", "wf_ledger", "case_sequences")


@pytest.fixture(scope="session")
def wf() -> Engine:
    """The protocol engine, built once (the product builds one per process)."""
    return build_engine(cipher=cipher())


@pytest.fixture
def cipher_() -> Cipher:
    return cipher()


@dataclass
class Cast:
    establishment: Establishment
    lead: User  # IMB lead: owns the cases below
    second_lead: User  # another IMB lead
    staff: User  # IMB staff, assigned to the cases they open
    other_staff: User  # IMB staff, not assigned
    party_lead: User  # HMIP lead: HMIP is party to the cases
    outside_lead: User  # PPO lead: no part in the cases
    auditor: User  # IMB auditor
    admin: User


@pytest.fixture
def cast(database: Database) -> Cast:
    """Users and an establishment, committed so that every session sees them."""
    with database.session() as s:
        c = Cast(
            establishment=make_establishment(s, name="HMP Thornbury Fen"),
            lead=make_user(s, role=Role.LEAD, body="IMB", name="Lead One"),
            second_lead=make_user(s, role=Role.LEAD, body="IMB", name="Lead Two"),
            staff=make_user(s, role=Role.STAFF, body="IMB"),
            other_staff=make_user(s, role=Role.STAFF, body="IMB"),
            party_lead=make_user(s, role=Role.LEAD, body="HMIP"),
            outside_lead=make_user(s, role=Role.LEAD, body="PPO"),
            auditor=make_user(s, role=Role.AUDITOR, body="IMB"),
            admin=make_user(s, role=Role.ADMIN, body=None),
        )
        s.commit()
    return c


def count_rows(database: Database, tables: tuple[str, ...] = COUNTED_TABLES) -> dict[str, int]:
    """Row counts read in a fresh transaction (what another connection sees)."""
    with database.engine.connect() as conn:
        return {t: int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in tables}
