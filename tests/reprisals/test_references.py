"""Case references: RPR-<year>-<sequence>, in order, without gaps or duplicates, under concurrency."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from reprisals.errors import InvalidInput
from reprisals.models import Case, CaseSequence
from reprisals.services import open_case
from tests.conftest import Database
from tests.factories import case_data, cipher
from tests.reprisals.conftest import Cast, count_rows
from workflow.engine import Engine
from workflow.history import verify

T0 = datetime(2025, 4, 16, 9, 30, tzinfo=UTC)
THREADS = 10


def _open_and_commit(database: Database, wf: Engine, cast: Cast, now: datetime = T0) -> str:
    with database.session() as s:
        case = open_case(s, wf, cipher(), cast.staff, now, case_data(cast.establishment))
        s.commit()
        return case.reference


def _committed_references(database: Database) -> list[str]:
    with database.session() as s:
        return list(s.scalars(select(Case.reference).order_by(Case.id)))


def test_references_numbered_in_order_when_cases_are_opened_one_after_another(
        database: Database, wf: Engine, cast: Cast) -> None:
    refs = [_open_and_commit(database, wf, cast, T0 + timedelta(minutes=i)) for i in range(3)]
    assert refs == ["RPR-2025-0001", "RPR-2025-0002", "RPR-2025-0003"]
    assert _committed_references(database) == refs


def test_sequence_restarts_at_one_when_the_year_changes_in_london(
        database: Database, wf: Engine, cast: Cast) -> None:
    eve = datetime(2025, 12, 31, 23, 59, tzinfo=UTC)
    assert _open_and_commit(database, wf, cast, eve) == "RPR-2025-0001"
    assert _open_and_commit(database, wf, cast, eve + timedelta(minutes=2)) == "RPR-2026-0001"
    assert _open_and_commit(database, wf, cast, eve + timedelta(minutes=3)) == "RPR-2026-0002"
    with database.session() as s:
        assert {(r.year, r.last) for r in s.scalars(select(CaseSequence))} == {(2025, 1), (2026, 2)}


def test_no_gap_when_an_opening_is_rolled_back(database: Database, wf: Engine, cast: Cast) -> None:
    assert _open_and_commit(database, wf, cast) == "RPR-2025-0001"
    with database.session() as s:
        abandoned = open_case(s, wf, cipher(), cast.staff, T0, case_data(cast.establishment))
        assert abandoned.reference == "RPR-2025-0002"
        s.rollback()
    # Refused input never reaches the counter either.
    with database.session() as s, pytest.raises(InvalidInput):
        open_case(s, wf, cipher(), cast.staff, T0, case_data(cast.establishment, channel="pigeon"))
    assert count_rows(database)["cases"] == 1
    assert _open_and_commit(database, wf, cast) == "RPR-2025-0002"
    assert _committed_references(database) == ["RPR-2025-0001", "RPR-2025-0002"]


def _race(database: Database, wf: Engine, cast: Cast, keep: list[bool]) -> list[str | None]:
    """Open one case per thread, all released at once; a thread commits when ``keep[i]``, else
    rolls back after holding its number for a moment. Returns each thread's committed reference."""
    start = threading.Barrier(len(keep))

    def work(i: int) -> str | None:
        with database.session() as s:
            start.wait(timeout=30)
            case = open_case(s, wf, cipher(), cast.staff, T0, case_data(cast.establishment))
            reference = case.reference
            if keep[i]:
                s.commit()
                return reference
            threading.Event().wait(0.02)  # hold the counter's lock while others queue behind it
            s.rollback()
            return None

    with ThreadPoolExecutor(max_workers=len(keep)) as pool:
        futures = [pool.submit(work, i) for i in range(len(keep))]
        return [f.result(timeout=60) for f in futures]


def test_distinct_consecutive_references_when_ten_threads_open_cases_at_once(
        database: Database, wf: Engine, cast: Cast) -> None:
    # SQLite: each transaction begins IMMEDIATE, so openings queue; PostgreSQL: the counter row lock.
    refs = _race(database, wf, cast, [True] * THREADS)
    assert sorted(refs) == [f"RPR-2025-{n:04d}" for n in range(1, THREADS + 1)]  # type: ignore[type-var]
    assert sorted(_committed_references(database)) == sorted(refs)  # type: ignore[type-var]
    with database.session() as s:
        assert s.get(CaseSequence, 2025).last == THREADS
        report = verify(s)
        assert report.ok, report.findings
        assert report.instances == THREADS


def test_no_gaps_when_concurrent_openings_half_roll_back(database: Database, wf: Engine, cast: Cast) -> None:
    keep = [i % 2 == 0 for i in range(THREADS)]
    refs = [r for r in _race(database, wf, cast, keep) if r is not None]
    assert sorted(refs) == [f"RPR-2025-{n:04d}" for n in range(1, THREADS // 2 + 1)]
    with database.session() as s:
        assert s.get(CaseSequence, 2025).last == THREADS // 2
        assert verify(s).ok
    assert count_rows(database)["wf_instances"] == THREADS // 2
