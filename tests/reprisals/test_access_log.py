"""The access log is append-only in the database, chained per sealed day, and its verifier finds what a
superuser did anyway."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from reprisals import access_log
from reprisals.access_log import AccessEntry, record, seal_days, verify_log
from reprisals.models import Role
from tests.conftest import Database
from tests.factories import make_user, seed_bodies

DAY1 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _fill(database: Database) -> list[int]:
    with database.session() as s:
        seed_bodies(s)
        lead = make_user(s, role=Role.LEAD, body="IMB")
        admin = make_user(s, role=Role.ADMIN, body=None)
        ids = []
        for day in range(3):
            for n in range(3):
                at = DAY1 + timedelta(days=day, minutes=n)
                ids.append(record(s, at, "signed_in", actor=lead, client="203.0.113.9").id)
            ids.append(record(s, at, "role_changed", actor=admin, subject=lead, detail={"role": "lead"}).id)
        assert seal_days(s, DAY1 + timedelta(days=2, hours=1)) == 2  # the third day is today: not sealed
        s.commit()
        return ids


def test_entries_seal_by_day_and_verify(database: Database) -> None:
    _fill(database)
    with database.session() as s:
        report = verify_log(s)
        assert report.ok, report.problems
        assert (report.entries, report.days) == (12, 2)
        assert seal_days(s, DAY1 + timedelta(days=5)) == 1  # the third day, once it is over
        assert seal_days(s, DAY1 + timedelta(days=5)) == 0
        s.commit()
        assert verify_log(s).ok
        # No address in the clear.
        assert not s.scalar(sa.select(sa.func.count()).select_from(AccessEntry)
                            .where(AccessEntry.client_hash.contains("203.0.113")))


def test_the_log_refuses_update_and_delete(database: Database) -> None:
    ids = _fill(database)
    for sql in (f"UPDATE access_log SET kind = 'signed_out' WHERE id = {ids[0]}",
                f"DELETE FROM access_log WHERE id = {ids[0]}"):
        with pytest.raises(sa.exc.DBAPIError):
            database.raw(sql)


@pytest.mark.parametrize("tamper, words", [
    ("UPDATE access_log SET kind = 'signed_out' WHERE id = {first}", "does not match its hash"),
    ("DELETE FROM access_log WHERE id = {first}", "are not the 4 sealed"),
    ("DELETE FROM access_log_days WHERE day = '2026-03-02'", "does not follow the day sealed before"),
])
def test_the_verifier_finds_a_superusers_changes(database: Database, tamper: str, words: str) -> None:
    ids = _fill(database)
    database.disable_append_only()
    database.raw(tamper.format(first=ids[0]))
    with database.session() as s:
        report = verify_log(s)
    assert not report.ok
    assert any(words in p for p in report.problems), report.problems


def test_an_entry_slipped_into_a_sealed_day_shows(database: Database) -> None:
    _fill(database)
    with database.session() as s:
        record(s, DAY1 + timedelta(hours=3), "signed_out", actor=None)
        s.commit()
        assert any("are not the 4 sealed" in p for p in verify_log(s).problems)


def test_an_unknown_kind_is_a_bug(database: Database) -> None:
    with database.session() as s, pytest.raises(ValueError, match="unknown access-log kind"):
        record(s, DAY1, "peeked")
    assert "viewed_sensitive" in access_log.KINDS
