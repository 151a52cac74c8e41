"""The deadline sweep run by real OS processes against one database: two sweepers share the work
and every timer's effect happens exactly once; a sweeper killed with SIGKILL mid-sweep loses nothing
and duplicates nothing once another sweep runs.

On PostgreSQL the sweepers claim with ``FOR UPDATE SKIP LOCKED``; on SQLite (a file in WAL mode)
``BEGIN IMMEDIATE`` serialises their transactions. Both are run for real. The effects table has no
unique key, so a timer fired twice would show as two rows.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tests.conftest import Database
from tests.support.sweeper import create_effects_table, effect_handler, insert_due_timers, skip_fsync
from tests.support.waiting import wait_for
from workflow.db import create_db_engine
from workflow.deadlines import Timers

REPO = Path(__file__).resolve().parents[2]
TIMERS = 2_000


def sweeper(database: Database, worker: str, tmp_path: Path, *, sleep: float = 0.0, go: Path | None = None,
            skip_fsync: bool = False) -> tuple[subprocess.Popen[str], Path]:
    ready = tmp_path / f"{worker}.ready"
    args = [sys.executable, "-m", "tests.support.sweeper", database.url, "--worker", worker,
            "--sleep", str(sleep), "--ready", str(ready)]
    if go is not None:
        args += ["--go", str(go)]
    if skip_fsync:
        args.append("--skip-fsync")
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={k: v for k, v in os.environ.items() if not k.startswith("REPRISALS_")})
    return proc, ready


def scalar(database: Database, sql: str) -> int:
    """Read without taking a write lock: on SQLite our engines BEGIN IMMEDIATE, which would queue this
    read behind the sweeper's transaction; a plain WAL reader sees the last commit at once."""
    if database.dialect == "sqlite":
        con = sqlite3.connect(database.url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            return int(con.execute(sql).fetchone()[0])
        finally:
            con.close()
    with database.engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def counts(database: Database, column: str, table: str) -> dict[str, int]:
    """How many rows of ``table`` have each value of ``column``."""
    return {row[0]: row[1] for row in database.raw(f"SELECT {column}, count(*) FROM {table} GROUP BY {column}")}


def timer_counts(database: Database) -> dict[str, int]:
    return counts(database, "status", "wf_timers")


def test_every_timer_fires_exactly_once_and_both_share_the_work_when_two_processes_sweep_together(
        database: Database, tmp_path: Path) -> None:
    create_effects_table(database.engine)
    insert_due_timers(database.engine, TIMERS, datetime.now(UTC) - timedelta(hours=1))
    go = tmp_path / "go"
    # Without waiting for the disk on each commit (see tests.support.sweeper.skip_fsync): 2,000
    # fsyncs per process would take ~20 s here and prove nothing more about claiming.
    # A millisecond of work per timer (inside its transaction) keeps each sweep busy for a couple of
    # seconds: batched sweeps are fast enough that, on a loaded machine, one process could otherwise
    # finish all 2,000 before the other starts, which would prove nothing about claiming.
    procs = [sweeper(database, worker, tmp_path, go=go, skip_fsync=True, sleep=0.001) for worker in ("A", "B")]
    wait_for(lambda: all(ready.exists() for _, ready in procs), "both sweepers to connect")
    go.touch()

    results = []
    for proc, _ in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))

    assert scalar(database, "SELECT count(*) FROM sweep_effects") == TIMERS
    assert scalar(database, "SELECT count(DISTINCT timer_id) FROM sweep_effects") == TIMERS
    assert timer_counts(database) == {"fired": TIMERS}
    assert scalar(database, "SELECT count(*) FROM wf_deadlines WHERE status = 'overdue'") == TIMERS
    by_worker = counts(database, "worker", "sweep_effects")
    fired_by = counts(database, "fired_by", "wf_timers")
    assert sum(r["fired"] for r in results) == TIMERS
    reported = {r["worker"]: r["fired"] for r in results if r["fired"]}
    assert reported == by_worker == fired_by  # each claim's effect is its own
    assert by_worker.get("A", 0) > 0 and by_worker.get("B", 0) > 0, by_worker
    # The timer row and its effect commit together: no timer marked by one worker and acted on by the other.
    mismatched = scalar(database, "SELECT count(*) FROM sweep_effects e JOIN wf_timers t ON t.id = e.timer_id "
                                  "WHERE t.fired_by <> e.worker")
    assert mismatched == 0


def test_no_timer_is_lost_or_fired_twice_when_a_sweeper_is_killed_mid_sweep_and_another_sweeps(
        database: Database, tmp_path: Path) -> None:
    count = 300
    create_effects_table(database.engine)
    insert_due_timers(database.engine, count, datetime.now(UTC) - timedelta(minutes=5))
    # The handler inserts its effect, then sleeps inside the timer's transaction: the kill almost
    # always lands while an effect is written but not committed.
    proc, _ = sweeper(database, "doomed", tmp_path, sleep=0.02)
    try:
        wait_for(lambda: scalar(database, "SELECT count(*) FROM sweep_effects") >= 20, "some committed effects")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    if database.dialect == "postgresql":
        # The server notices the closed socket and rolls the dead transaction back (releasing its
        # row lock) on its own time; until then SKIP LOCKED would rightly pass that timer by.
        wait_for(lambda: scalar(database, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                          "AND pid <> pg_backend_pid() AND state <> 'idle'") == 0,
                 "the killed sweeper's transaction to end")
    done_before = scalar(database, "SELECT count(*) FROM sweep_effects")
    assert 20 <= done_before < count, done_before  # killed mid-sweep, not before or after
    # Nothing half-done survived the kill: exactly the committed timers have their effect.
    assert timer_counts(database).get("fired", 0) == done_before
    assert scalar(database, "SELECT count(*) FROM sweep_effects e JOIN wf_timers t ON t.id = e.timer_id "
                            "WHERE t.status = 'fired'") == done_before

    survivor = create_db_engine(database.url)
    skip_fsync(survivor)
    with Session(survivor) as session:
        result = Timers().sweep_due(session, datetime.now(UTC), effect_handler("survivor"), worker="survivor")
    survivor.dispose()

    assert result.fired == count - done_before
    assert scalar(database, "SELECT count(*) FROM sweep_effects") == count
    assert scalar(database, "SELECT count(DISTINCT timer_id) FROM sweep_effects") == count
    assert timer_counts(database) == {"fired": count}
    assert counts(database, "worker", "sweep_effects") == {"doomed": done_before, "survivor": count - done_before}
