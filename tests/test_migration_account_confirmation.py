"""The account-confirmation migration (decision 22): accounts that exist are confirmed as of their creation,
except staff and leads still invited (made by an admin, seen by no lead), who wait like a new invitation."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

import migrations
from tests.conftest import EmptyDatabase
from workflow.db import create_db_engine

REVISION = "0016"


# SQLite only (suite time): the data rule is one plain UPDATE; tests/test_migrations.py runs the revision on both.
@pytest.mark.parametrize("empty_db", ["sqlite"], indirect=True)
def test_existing_accounts_are_confirmed_but_invited_staff_and_leads_wait(empty_db: EmptyDatabase) -> None:
    before = ScriptDirectory(str(migrations.SCRIPT_LOCATION)).get_revision(REVISION).down_revision
    assert isinstance(before, str)
    migrations.upgrade(empty_db.url, before)
    engine = create_db_engine(empty_db.url)
    try:
        with engine.begin() as conn:
            for n, (role, body, password) in enumerate([("lead", "IMB", "$argon2id$x"), ("lead", "IMB", "!invited"),
                                                        ("staff", "HMIP", "!invited"), ("auditor", "IMB", "!invited"),
                                                        ("admin", None, "$argon2id$y")]):
                conn.execute(sa.text("INSERT INTO users (email, name, role, body_code, password_hash, active, "
                                     "email_notifications, created_at) VALUES (:e, :n, :r, :b, :p, :a, :a, :c)"),
                             {"e": f"u{n}@example.test", "n": f"U{n}", "r": role, "b": body, "p": password, "a": True,
                              "c": "2025-01-01 09:00:00+00:00"})
        migrations.upgrade(empty_db.url, REVISION)
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT email, confirmed_at IS NOT NULL FROM users ORDER BY email")).all()
        assert [(e, bool(c)) for e, c in rows] == [("u0@example.test", True), ("u1@example.test", False),
                                                   ("u2@example.test", False), ("u3@example.test", True),
                                                   ("u4@example.test", True)]
        migrations.downgrade(empty_db.url, before)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one() == 5
            names = {c["name"] for c in sa.inspect(conn).get_columns("users")}
        assert not names & {"confirmed_at", "refused_at", "refusal_reason"}
    finally:
        engine.dispose()


