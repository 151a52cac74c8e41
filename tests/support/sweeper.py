"""A deadline sweeper as its own OS process, for the concurrency and crash tests.

``python -m tests.support.sweeper URL --worker NAME [--sleep S] [--ready FILE --go FILE] [--skip-fsync]`` connects,
touches ``--ready``, waits until ``--go`` exists (so two sweepers start together), then runs one
``Timers.sweep_due`` whose handler inserts one ``sweep_effects`` row per timer — in the timer's own
transaction, before sleeping ``--sleep`` seconds, so a kill during the sleep leaves an uncommitted
effect. Prints the sweep's result as one JSON line.

The effects table has no unique key on purpose: a timer fired twice shows as two rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from workflow.db import create_db_engine
from workflow.deadlines import Timers
from workflow.models import DeadlineRow, TimerRow, WorkflowInstance
from workflow.sweep import Fired, Handler

effects_metadata = sa.MetaData()
EFFECTS = sa.Table(
    "sweep_effects", effects_metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("timer_id", sa.Integer, nullable=False),
    sa.Column("worker", sa.String(100), nullable=False),
)


def create_effects_table(engine: sa.Engine) -> None:
    effects_metadata.create_all(engine)


def insert_due_timers(engine: sa.Engine, count: int, latest: datetime) -> list[int]:
    """``count`` instances, each with one open deadline and one pending due timer, in three bulk
    inserts. Timer ``i`` is due ``count - i`` seconds before ``latest`` (oldest first). Returns the
    timer ids."""
    ids = list(range(1, count + 1))
    created = latest - timedelta(days=1)
    due = {i: latest - timedelta(seconds=count - i) for i in ids}
    with engine.begin() as conn:
        conn.execute(sa.insert(WorkflowInstance), [
            {"id": i, "spec_key": "sweep-test", "spec_version": 1, "stage": "waiting", "variables": {},
             "calendar": None, "created_at": created, "stage_entered_at": created, "updated_at": created,
             "head_seq": 0, "head_hash": "", "version": 1} for i in ids])
        conn.execute(sa.insert(DeadlineRow), [
            {"id": i, "instance_id": i, "entry_seq": 1, "stage": "waiting", "name": "reply", "label": "Reply",
             "action": "overdue", "unit": "hours", "amount": 24, "reminders": [], "anchor_at": created,
             "due_at": due[i], "status": "open", "generation": 1, "created_at": created} for i in ids])
        conn.execute(sa.insert(TimerRow), [
            {"id": i, "deadline_id": i, "instance_id": i, "kind": "due", "ordinal": 0, "generation": 1,
             "fire_at": due[i], "available_at": due[i], "status": "pending", "attempts": 0, "created_at": created}
            for i in ids])
        if conn.dialect.name == "postgresql":  # explicit ids leave the sequences behind
            for table in ("wf_instances", "wf_deadlines", "wf_timers"):
                conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {count})"))
    return ids


def skip_fsync(engine: sa.Engine) -> None:
    """Commit without waiting for the disk (``synchronous_commit=off`` / ``PRAGMA synchronous=OFF``).

    Only durability against a crash of the machine or the database server changes; locking,
    visibility and what a killed client leaves behind do not. Without it every commit waits ~10 ms
    for an fsync here, and the tests would time the disk rather than the claiming.
    """

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("SET synchronous_commit = off" if engine.dialect.name == "postgresql" else "PRAGMA synchronous=OFF")
        cur.close()
        if engine.dialect.name == "postgresql":
            dbapi_conn.commit()


def effect_handler(worker: str, sleep: float = 0.0) -> Handler:
    def handle(session: Session, fired: Fired) -> None:
        session.execute(sa.insert(EFFECTS).values(timer_id=fired.timer.id, worker=worker))
        if sleep:
            time.sleep(sleep)

    return handle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--worker", required=True)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--ready", type=Path)
    parser.add_argument("--go", type=Path)
    parser.add_argument("--skip-fsync", action="store_true")
    args = parser.parse_args(argv)

    engine = create_db_engine(args.url)
    if args.skip_fsync:
        skip_fsync(engine)
    with engine.connect() as conn:  # connect before the start line, so both start on equal terms
        conn.execute(sa.text("SELECT 1"))
    if args.ready:
        args.ready.touch()
    if args.go:
        deadline = time.monotonic() + 60
        while not args.go.exists():
            if time.monotonic() > deadline:
                sys.stderr.write("sweeper: never told to go\n")
                return 2
            time.sleep(0.005)
    session = sessionmaker(engine, expire_on_commit=False)()
    result = Timers().sweep_due(session, datetime.now(UTC), effect_handler(args.worker, args.sleep),
                                worker=args.worker)
    session.close()
    engine.dispose()
    sys.stdout.write(json.dumps({"worker": args.worker, "fired": result.fired, "failed": result.failed,
                                 "skipped": result.skipped}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
