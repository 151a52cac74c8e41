"""Benchmark 3: the deadline sweep — throughput of one sweep, and lag under a trickle of due timers.

Aims (from the issue): one sweep handles >= 1,000 due timers per second; with the default scheduler
interval, the lag of a fired timer (``fired_at - fire_at``) is at most interval + 1 s at the 99th
percentile.

**Throughput.** For each database (an SQLite file made by ``create_db_engine``; a PostgreSQL database
of its own, dropped at the end), one template is bulk-loaded with Core: ``--timers`` pending timers
(default 100,000) with their instances, deadlines and cases, of which ``--due`` (default 10%) are due
at the sweep's ``now`` and the rest are 6 hours to 60 days ahead. The deadlines are the sanctions
spec's own (labels, actions, reminders), in a mix: a fifth of the due timers are reminders of a
referral whose deadline is still ahead; the others are deadlines that have passed (some
``overdue_escalate``, some urgent). Every instance has its ``cases`` row (written by Core, with a
party, a detainee and ciphertext-sized columns, across four bodies with leads and staff, one case in
ten unassigned): building 100,000 cases through the services would take far longer than the sweep
being measured, and the handler only reads the case, its assigned user and the body's leads.

Each variant sweeps its own copy of the template (an SQLite file copy; ``CREATE DATABASE … TEMPLATE``
on PostgreSQL, analysed as autovacuum would have) until no due timer is left. The variants take turns
in a rotating order, ``CHUNK`` timers a turn (``sweep_due(..., limit=CHUNK)``), so that other processes
on the machine slow them alike; a variant's time is the sum of its turns, the last of which finds
nothing due (as a sweep ends). The variants:

* ``sweep``: ``Timers().sweep_due(session, now, handler)`` with a trivial handler, on a session made
  as ``Runtime`` makes them (``expire_on_commit=False``);
* ``sweep-domain``: the same with ``reprisals.deadlines.make_timer_handler`` (reads the case and the
  leads, adds outbox rows);
* ``core``, the baseline of ``sweep``: a plain Core loop on one connection doing the same per-timer
  work: select the oldest due timer with the same WHERE, ORDER BY, LIMIT 1 and locking clause
  (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; ``BEGIN IMMEDIATE`` on SQLite), read its deadline, mark
  the deadline overdue (a due timer) and the timer fired, commit;
* ``core-domain``, the baseline of ``sweep-domain``: the same plus the handler's reads (the case with
  its assigned user, the body's active leads) and its outbox rows (in-app, and e-mail at the working
  hours ``Messenger`` computes: one INSERT … ON CONFLICT DO NOTHING executed for the timer's messages).

The two domain-handler variants are the slow ones; to keep the benchmark within minutes they sweep one
due timer in ``DOMAIN_SHARE`` (every fifth by id, so the same mix), the others moved a year ahead
first: the same 100,000 pending timers, 2,000 of them due.

Every run must leave exactly its due timers fired and the rest pending, having sent the messages the
cast implies; the sweep's rows (timers, deadlines, outbox) must equal its baseline's row for row —
``now`` is fixed, so ``fired_at`` and lateness are deterministic. A small warm-up database per
variant first loads the code paths and counts the statements per timer.

**Lag.** A copy of the same template (its due timers moved a year ahead, so 100,000 pending timers in
the table) gets a steady trickle of ``TRICKLE_RATE`` timers per second due over a window of whole
intervals, then a real scheduler (``web.scheduler.build_scheduler``, a BackgroundScheduler with the
sweep and the outbox delivery jobs, interval from ``REPRISALS_SCHEDULER_INTERVAL``: default 15 s)
runs with the real clock. Lag percentiles come from the fired rows. PostgreSQL and SQLite run at the
same time, their ticks half an interval apart, so that neither sweep waits for the other's CPU.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_SUBMITTED
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.orm import Session, sessionmaker

import notifications.models
import reprisals.models  # noqa: F401  (registers the domain's tables on the shared MetaData)
from reprisals.config import load_settings
from reprisals.deadlines import late_text, local_text, make_timer_handler
from reprisals.messaging import Messenger
from reprisals.models import AgeGroup, Channel, Consent, Risk, Role
from reprisals.protocol import SPEC_KEY, build_engine
from reprisals.runtime import Runtime
from reprisals.schema import create_all
from tests.bench.common import ProfileSummary, fmt_int, fmt_ratio, profile, table, timed
from tests.factories import TEST_KEY, cipher, make_establishment, make_user, seed_bodies
from web.scheduler import SWEEP_JOB_ID, build_scheduler
from workflow.db import create_db_engine
from workflow.deadlines import Timers
from workflow.models import DUE, FIRED, OVERDUE, PENDING, REMINDER, metadata
from workflow.sweep import Fired, Handler, worker_id

PG_ADMIN_URL = os.environ.get("REPRISALS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
AIM_PER_S = 1000.0
LAG_SLACK_S = 1.0  # the lag aim: p99 <= interval + 1 s
TRICKLE_RATE = 10  # timers per second becoming due during the lag run
BASE_URL = "https://reprisals.bench.invalid"
WARM_TIMERS, WARM_DUE = 600, 120
PROFILE_TIMERS = 500  # due timers swept under cProfile when an aim is missed (or --profile)
SHARE_REMINDERS = 5  # one due timer in five is a reminder
CHUNK = 500  # timers per sweep_due call (limit=CHUNK) in the interleaved throughput runs
DOMAIN_SHARE = 5  # the domain-handler variants sweep one due timer in five (the others are postponed)

VARIANTS = ("core", "sweep", "core-domain", "sweep-domain")
BASELINE = {"sweep": "core", "sweep-domain": "core-domain"}
LABELS = {
    "sweep": "Timers.sweep_due, trivial handler",
    "core": "baseline: Core loop, same timer/deadline work",
    "sweep-domain": "Timers.sweep_due, domain handler",
    "core-domain": "baseline: Core loop, same work + outbox",
}
PROFILED = ("sweep", "sweep-domain")

T = metadata.tables
OUTBOX = notifications.models.metadata.tables["outbox"]
TIMERS, DEADLINES, INSTANCES, CASES, USERS = (T["wf_timers"], T["wf_deadlines"], T["wf_instances"], T["cases"],
                                              T["users"])
LOADED = ("wf_instances", "wf_deadlines", "wf_timers", "cases", "case_parties", "detainees")

Log = Callable[[str], None]


# -- databases --------------------------------------------------------------------------------------


class Backend:
    """Creates, copies and drops databases of one kind; every database it made is dropped by close()."""

    dialect: str

    def create(self, name: str) -> str:
        raise NotImplementedError

    def copy(self, template_url: str, name: str) -> str:
        raise NotImplementedError

    def drop(self, url: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        raise NotImplementedError


class SQLiteBackend(Backend):
    dialect = "sqlite"

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="reprisals-bench-sweep-")
        self.folder = Path(self._tmp.name)

    def create(self, name: str) -> str:
        return f"sqlite:///{self.folder / name}.db"

    def copy(self, template_url: str, name: str) -> str:
        source = template_url.removeprefix("sqlite:///")
        checkpoint_sqlite(source)
        url = self.create(name)
        shutil.copyfile(source, url.removeprefix("sqlite:///"))
        return url

    def drop(self, url: str) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)

    def close(self) -> None:
        self._tmp.cleanup()

    def settings(self) -> dict[str, Any]:
        con = sqlite3.connect(self.folder / "probe.db")
        try:
            journal = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            sync = con.execute("PRAGMA synchronous").fetchone()[0]
        finally:
            con.close()
        (self.folder / "probe.db").unlink(missing_ok=True)
        return {"version": sqlite3.sqlite_version, "journal_mode": journal,
                "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(sync, sync),
                "folder": str(self.folder), "filesystem": _filesystem(self.folder)}


class PostgresBackend(Backend):
    dialect = "postgresql"

    def __init__(self, admin_url: str = PG_ADMIN_URL) -> None:
        self.admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with self.admin.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        self.base = admin_url.rsplit("/", 1)[0]
        self.prefix = f"rpr_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.made: list[str] = []

    def _url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def create(self, name: str) -> str:
        full = f"{self.prefix}_{name}"
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{full}"')
        self.made.append(full)
        return self._url(full)

    def copy(self, template_url: str, name: str) -> str:
        full = f"{self.prefix}_{name}"
        template = template_url.rsplit("/", 1)[1]
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{full}" TEMPLATE "{template}"')
        self.made.append(full)
        return self._url(full)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.made:
            self.made.remove(name)

    def close(self) -> None:
        for name in list(self.made):
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self.drop(self._url(name))
        self.admin.dispose()

    def settings(self) -> dict[str, Any]:
        with self.admin.connect() as conn:
            return {k: conn.exec_driver_sql(f"SHOW {k}").scalar() for k in
                    ("server_version", "fsync", "synchronous_commit", "shared_buffers", "full_page_writes")}


def checkpoint_sqlite(path: str | Path) -> None:
    """Empty the WAL into the file (on a plain connection: ours begin every transaction IMMEDIATE)."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0, "the WAL checkpoint was blocked by another connection"
    finally:
        con.close()


def _filesystem(path: Path) -> str:
    """The type of the filesystem holding ``path`` (tmpfs would make every fsync free)."""
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                parts = line.split()
                if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                    best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


def backends(log: Log) -> tuple[list[Backend], list[str]]:
    out: list[Backend] = [SQLiteBackend()]
    notes = []
    try:
        out.append(PostgresBackend())
    except sa.exc.SQLAlchemyError as exc:
        notes.append(f"PostgreSQL skipped: cannot connect to {PG_ADMIN_URL} ({type(exc).__name__})")
        log("  " + notes[-1])
    return out, notes


# -- the data ---------------------------------------------------------------------------------------

# (stage, deadline, risk): deadlines of the sanctions spec without reminders (one timer each), and the
# referral's response deadline with its reminder (two timers).
SINGLE = [("triage", "triage_decision", "standard"), ("assessment", "assessment", "standard"),
          ("follow_up", "follow_up_contact", "high"), ("closure_review", "closure_check", "standard"),
          ("referred", "urgent_contact", "urgent")]
PAIR = [("referred", "establishment_response", "standard"), ("referred", "establishment_response", "high")]
BODIES = ("IMB", "HMIP", "PPO", "LO")
CIPHERTEXT = "gAAAAA" + "x" * 180  # about the length of the Fernet tokens the real columns hold


@dataclass
class Cast:
    establishment_id: int
    staff: dict[str, list[int]]
    leads: dict[str, list[int]]  # active leads, by id (what leads_of returns)


@dataclass
class Ids:
    """The next id of each loaded table (ids are given explicitly, so several loads can follow)."""

    instance: int = 1
    deadline: int = 1
    timer: int = 1

    def as_dict(self) -> dict[str, int]:
        return {"instance": self.instance, "deadline": self.deadline, "timer": self.timer}


@dataclass
class Loaded:
    timers: int = 0
    due: int = 0
    sends_by_timer: dict[int, int] = field(default_factory=dict)  # due timer -> (template, person) pairs to send
    due_ids: list[int] = field(default_factory=list)

    @property
    def sends(self) -> int:
        return sum(self.sends_by_timer.values())

    @property
    def messages(self) -> int:
        """Outbox rows the domain handler must add: in-app and e-mail (every person of the cast is active,
        e-mail on by default)."""
        return 2 * self.sends


def postpone(engine: sa.Engine, timer_ids: list[int], by: timedelta = timedelta(days=365)) -> None:
    """Move these pending timers ``by`` later (out of a sweep's reach; they stay pending)."""
    if not timer_ids:
        return
    with engine.begin() as conn:
        for k in range(0, len(timer_ids), 5000):  # within SQLite's limit of host parameters
            rows = conn.execute(sa.select(TIMERS.c.id, TIMERS.c.fire_at)
                                .where(TIMERS.c.id.in_(timer_ids[k:k + 5000]))).all()
            conn.execute(TIMERS.update().where(TIMERS.c.id == sa.bindparam("tid")).values(
                fire_at=sa.bindparam("at"), available_at=sa.bindparam("at")),
                [{"tid": r.id, "at": r.fire_at + by} for r in rows])


def subset(loaded: Loaded, share: int) -> tuple[Loaded, list[int]]:
    """Every ``share``-th due timer (by id): what stays due, and the timers to postpone."""
    ordered = sorted(loaded.due_ids)
    keep = ordered[::share]
    kept = set(keep)
    return (Loaded(loaded.timers, len(keep), {t: loaded.sends_by_timer[t] for t in keep}, keep),
            [t for t in ordered if t not in kept])


def make_cast(engine: sa.Engine) -> Cast:
    with sessionmaker(engine, expire_on_commit=False)() as s:
        seed_bodies(s)
        est = make_establishment(s, name=f"HMP Bench {uuid.uuid4().hex[:6]}")
        staff: dict[str, list[int]] = {}
        leads: dict[str, list[int]] = {}
        for body in BODIES:
            staff[body] = [make_user(s, role=Role.STAFF, body=body).id for _ in range(3)]
            leads[body] = [make_user(s, role=Role.LEAD, body=body).id for _ in range(2)]
        make_user(s, role=Role.LEAD, body="IMB", active=False)  # leads_of must leave this one out
        s.commit()
        return Cast(est.id, staff, leads)


def _spec_deadlines() -> dict[tuple[str, str], Any]:
    spec = build_engine(cipher=cipher()).spec(SPEC_KEY)
    return {(stage, d.name): d for stage, st in spec.stages.items() for d in st.deadlines}


def load(engine: sa.Engine, cast: Cast, ids: Ids, *, now: datetime, due_times: list[datetime], n_future: int,
         seed: int, chunk: int = 5000) -> Loaded:
    """Bulk-insert (Core) instances, deadlines, timers and cases: a timer due at each of ``due_times``
    (one in five a reminder, whose deadline is due 3 days after it) and ``n_future`` more pending
    timers 6 hours to 60 days after ``now``."""
    rng = random.Random(seed)
    spec_deadlines = _spec_deadlines()
    out = Loaded()
    items: list[tuple[tuple[str, str, str], list[tuple[str, int, datetime]], datetime, bool]] = []
    for k, at in enumerate(due_times):
        if k % SHARE_REMINDERS == 0:
            items.append((PAIR[k % len(PAIR)], [(REMINDER, 1, at), (DUE, 0, at + timedelta(days=3))],
                          at + timedelta(days=3), True))
        else:
            items.append((SINGLE[k % len(SINGLE)], [(DUE, 0, at)], at, True))
    left = n_future - sum(len(t) - 1 for _, t, _, _ in items)  # the reminders' due timers are future ones
    pairs = left // 4
    for k in range(pairs):
        at = now + timedelta(seconds=rng.uniform(6 * 3600, 30 * 86400))
        items.append((PAIR[k % len(PAIR)], [(REMINDER, 1, at), (DUE, 0, at + timedelta(days=3))],
                      at + timedelta(days=3), False))
    for k in range(left - 2 * pairs):
        at = now + timedelta(seconds=rng.uniform(6 * 3600, 60 * 86400))
        items.append((SINGLE[k % len(SINGLE)], [(DUE, 0, at)], at, False))
    rng.shuffle(items)  # ids unrelated to due times: the sweep reads rows all over the tables

    created = now - timedelta(days=10)
    inserts = {name: T[name].insert() for name in LOADED}
    for start in range(0, len(items), chunk):
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name in LOADED}
        for (stage, name, risk), timers, due_at, is_due in items[start:start + chunk]:
            spec_d = spec_deadlines[(stage, name)]
            variables = {"received_at": created.isoformat(), "triage_from": created.isoformat(), "risk": risk,
                         "consent": "full", "escalation_level": 0}
            duration = spec_d.due.for_variables(variables)
            iid, did = ids.instance, ids.deadline
            ids.instance += 1
            ids.deadline += 1
            body = BODIES[iid % len(BODIES)]
            assigned = None if iid % 10 == 0 else cast.staff[body][iid % 3]
            rows["wf_instances"].append({
                "id": iid, "spec_key": SPEC_KEY, "spec_version": 1, "stage": stage, "variables": variables,
                "calendar": "england", "created_at": created, "stage_entered_at": created, "updated_at": created,
                "head_seq": 3, "head_hash": "0" * 64, "version": 3})
            rows["wf_deadlines"].append({
                "id": did, "instance_id": iid, "entry_seq": 3, "stage": stage, "name": name, "label": spec_d.label,
                "action": spec_d.on_due, "unit": duration.unit.value, "amount": duration.amount,
                "reminders": [r.short() for r in spec_d.reminders], "anchor_at": created, "due_at": due_at,
                "status": "open", "generation": 1, "paused_at": None, "overdue_at": None, "closed_at": None,
                "created_at": created})
            for kind, ordinal, at in timers:
                tid = ids.timer
                ids.timer += 1
                rows["wf_timers"].append({
                    "id": tid, "deadline_id": did, "instance_id": iid, "kind": kind, "ordinal": ordinal,
                    "generation": 1, "fire_at": at, "available_at": at, "status": PENDING, "attempts": 0,
                    "fired_at": None, "lateness_ms": None, "fired_by": None, "last_error": None,
                    "created_at": created})
                out.timers += 1
                if is_due and (kind == REMINDER or len(timers) == 1):
                    out.due += 1
                    out.due_ids.append(tid)
                    leads = cast.leads[body]
                    if kind == REMINDER:
                        sends = 1 if assigned else len(leads)
                    else:
                        sends = len(leads) + (1 if assigned else 0)
                        sends += len(leads) if spec_d.on_due == "overdue_escalate" else 0
                    out.sends_by_timer[tid] = sends
            rows["cases"].append({
                "id": iid, "reference": f"RPR-B-{iid:07d}", "instance_id": iid, "owning_body_code": body,
                "establishment_id": cast.establishment_id, "receiving_user_id": cast.staff[body][0],
                "assigned_user_id": assigned, "received_at": created, "channel": Channel.IMB_APPLICATION,
                "original_contact_date": None, "age_group": AgeGroup.ADULT,
                "sanction_types": ["loss_of_job_or_activity"], "detriment_dates": [],
                "description_ciphertext": CIPHERTEXT, "risk": Risk(risk), "consent": Consent.FULL,
                "consent_date": None, "consent_override_reason": None, "outcome": None, "closed_at": None,
                "linked_case_id": None, "created_at": created})
            rows["case_parties"].append({"case_id": iid, "body_code": "HMIP" if body != "HMIP" else "IMB"})
            rows["detainees"].append({"id": iid, "case_id": iid, "name_ciphertext": CIPHERTEXT,
                                      "number_ciphertext": CIPHERTEXT, "date_of_birth_ciphertext": CIPHERTEXT})
        with engine.begin() as conn:
            for name in LOADED:
                conn.execute(inserts[name], rows[name])
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:  # explicit ids: move the sequences past them, and analyse as autovacuum would
            for name in ("wf_instances", "wf_deadlines", "wf_timers", "cases", "detainees"):
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                                     f"(SELECT max(id) FROM {name}))")
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    return out


def prepare_template(backend: Backend, name: str, n_timers: int, n_due: int, now: datetime,
                     seed: int) -> tuple[str, Cast, Ids, Loaded]:
    url = backend.create(name)
    engine = create_db_engine(url, poolclass=sa.pool.NullPool)
    try:
        create_all(engine)
        cast = make_cast(engine)
        ids = Ids()
        rng = random.Random(seed)
        due_times = sorted(now - timedelta(seconds=rng.uniform(1, 3600)) for _ in range(n_due))
        loaded = load(engine, cast, ids, now=now, due_times=due_times, n_future=n_timers - n_due, seed=seed)
    finally:
        engine.dispose()
    assert loaded.timers == n_timers and loaded.due == n_due, (loaded.timers, loaded.due)
    return url, cast, ids, loaded


# -- what runs --------------------------------------------------------------------------------------


def _trivial(_session: Session, _fired: Fired) -> None:
    return None


def domain_handler() -> Handler:
    return make_timer_handler(Messenger(BASE_URL))


def run_sweep_orm(engine: sa.Engine, now: datetime, domain: bool, limit: int | None = None) -> dict[str, int]:
    handler = domain_handler() if domain else _trivial
    with sessionmaker(engine, expire_on_commit=False)() as session:
        result = Timers().sweep_due(session, now, handler, limit=limit)
    return {"fired": result.fired, "failed": result.failed, "skipped": result.skipped}


class CoreSweep:
    """The baseline: what a hand-written loop would send for the same per-timer work, on one connection."""

    def __init__(self, dialect: str, domain: bool) -> None:
        self.domain = domain
        tm, d = TIMERS, DEADLINES
        self.claim = (sa.select(tm.c.id, tm.c.deadline_id, tm.c.instance_id, tm.c.kind, tm.c.generation,
                                tm.c.fire_at)
                      .where(tm.c.status == PENDING, tm.c.available_at <= sa.bindparam("now"))
                      .order_by(tm.c.available_at, tm.c.id).limit(1))
        if dialect == "postgresql":
            self.claim = self.claim.with_for_update(skip_locked=True)
        self.deadline = sa.select(d.c.status, d.c.generation, d.c.due_at, d.c.label, d.c.stage, d.c.action).where(
            d.c.id == sa.bindparam("did"))
        self.overdue = d.update().where(d.c.id == sa.bindparam("did")).values(status=OVERDUE,
                                                                             overdue_at=sa.bindparam("now"))
        self.fired = tm.update().where(tm.c.id == sa.bindparam("tid")).values(
            status=FIRED, fired_at=sa.bindparam("now"), fired_by=sa.bindparam("worker"),
            lateness_ms=sa.bindparam("lateness_ms"))
        self.cancel = tm.update().where(tm.c.id == sa.bindparam("tid")).values(status="cancelled")
        self.passed = tm.update().where(tm.c.id == sa.bindparam("tid")).values(
            status=FIRED, fired_at=sa.bindparam("now"), fired_by=sa.bindparam("worker"),
            last_error="not sent: the deadline had already passed")
        c, u = CASES, USERS
        self.messenger = Messenger(BASE_URL)
        person = [u.c.id, u.c.active, u.c.email, u.c.email_notifications]
        self.case = (sa.select(c.c.reference, c.c.owning_body_code, c.c.risk, *person)
                     .outerjoin(u, u.c.id == c.c.assigned_user_id).where(c.c.instance_id == sa.bindparam("iid")))
        self.leads = (sa.select(*person).where(u.c.role == Role.LEAD, u.c.body_code == sa.bindparam("body"),
                                               u.c.active.is_(True)).order_by(u.c.id))
        insert = postgresql.insert if dialect == "postgresql" else sqlite_dialect.insert
        self.enqueue = insert(OUTBOX).on_conflict_do_nothing(index_elements=["idempotency_key"])
        self.email_from = datetime.min.replace(tzinfo=UTC)

    def run(self, engine: sa.Engine, now: datetime, limit: int | None = None) -> dict[str, int]:
        worker = worker_id()
        # When non-urgent e-mail may go: the same for every timer of a sweep (its ``now`` is fixed).
        self.email_from = self.messenger.working_hours_from(now)
        fired = skipped = 0
        with engine.connect() as conn:
            while limit is None or fired + skipped < limit:
                row = conn.execute(self.claim, {"now": now}).first()
                if row is None:
                    conn.rollback()
                    break
                d = conn.execute(self.deadline, {"did": row.deadline_id}).one()
                if d.status not in ("open", OVERDUE) or d.generation != row.generation:
                    conn.execute(self.cancel, {"tid": row.id})
                    skipped += 1
                elif row.kind == REMINDER and d.due_at <= now:
                    conn.execute(self.passed, {"tid": row.id, "now": now, "worker": worker})
                    skipped += 1
                else:
                    if row.kind == DUE:
                        conn.execute(self.overdue, {"did": row.deadline_id, "now": now})
                    lateness = max(timedelta(0), now - row.fire_at)
                    if self.domain:
                        self._handle(conn, row, d, now, lateness)
                    conn.execute(self.fired, {"tid": row.id, "now": now, "worker": worker,
                                              "lateness_ms": int(lateness.total_seconds() * 1000)})
                    fired += 1
                conn.commit()
        return {"fired": fired, "failed": 0, "skipped": skipped}

    def _handle(self, conn: sa.Connection, row: Any, d: Any, now: datetime, lateness: timedelta) -> None:
        case = conn.execute(self.case, {"iid": row.instance_id}).first()
        if case is None:
            return
        context = {
            "reference": case.reference, "deadline": d.label, "stage": d.stage, "due_at": d.due_at.isoformat(),
            "due_text": local_text(d.due_at), "url": f"{BASE_URL}/cases/{case.reference}",
            "late_by_seconds": int(lateness.total_seconds()), "late_text": late_text(lateness.total_seconds()),
        }
        staff = [case] if case.id is not None and case.active else []
        leads = list(conn.execute(self.leads, {"body": case.owning_body_code}))
        if row.kind == REMINDER:
            sends = [("reminder", u) for u in (staff or leads)]
        else:
            sends = [("overdue", u) for u in {u.id: u for u in staff + leads}.values()]
            if d.action == "overdue_escalate":
                sends += [("escalation_prompt", u) for u in leads]
        urgent = case.risk == Risk.URGENT or row.kind == DUE
        rows = []
        for template, u in sends:
            key = f"timer:{row.id}:{template}:{u.id}"
            message = {"template": template, "context": context, "urgent": urgent, "status": "pending",
                       "attempts": 0, "created_at": now}
            rows.append({**message, "idempotency_key": f"{key}:inapp", "channel": "inapp", "recipient": str(u.id),
                         "next_attempt_at": now})
            if u.email_notifications and u.active:
                rows.append({**message, "idempotency_key": f"{key}:email", "channel": self.messenger.email_channel,
                             "recipient": u.email, "next_attempt_at": now if urgent else max(now, self.email_from)})
        if rows:
            conn.execute(self.enqueue, rows)


def runner(variant: str, dialect: str) -> Callable[[sa.Engine, datetime, int | None], dict[str, int]]:
    if variant.startswith("core"):
        return CoreSweep(dialect, variant == "core-domain").run
    domain = variant == "sweep-domain"
    return lambda engine, now, limit: run_sweep_orm(engine, now, domain, limit)


# -- checks -----------------------------------------------------------------------------------------


def status_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        counts = {s: n for s, n in conn.execute(sa.select(TIMERS.c.status, sa.func.count())
                                                .group_by(TIMERS.c.status))}
        counts["outbox"] = conn.execute(sa.select(sa.func.count()).select_from(OUTBOX)).scalar_one()
    return counts


def dump(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """The rows a sweep writes: timers, deadlines, and the outbox (its ids excepted)."""
    out = {}
    with engine.connect() as conn:
        for t, order in ((TIMERS, [TIMERS.c.id]), (DEADLINES, [DEADLINES.c.id]),
                         (OUTBOX, [OUTBOX.c.idempotency_key])):
            cols = [c for c in t.columns if not (t is OUTBOX and c.name == "id")]
            out[t.name] = [tuple(r) for r in conn.execute(sa.select(*cols).order_by(*order))]
    return out


def compare(a: dict[str, list[tuple[Any, ...]]], b: dict[str, list[tuple[Any, ...]]]) -> list[str]:
    problems = []
    for name in a:
        if a[name] != b[name]:
            first = next((i for i, (x, y) in enumerate(zip(a[name], b[name], strict=False)) if x != y), None)
            problems.append(f"{name}: {len(a[name])} vs {len(b[name])} rows"
                            + (f"; first difference: {a[name][first]} != {b[name][first]}" if first is not None
                               else ""))
    return problems


def check_run(counts: dict[str, int], result: dict[str, int], n_timers: int, loaded: Loaded,
              domain: bool) -> list[str]:
    want = {"fired": loaded.due, PENDING: n_timers - loaded.due, "outbox": loaded.messages if domain else 0}
    problems = [f"{k}: {counts.get(k, 0):,} (expected {v:,})" for k, v in want.items() if counts.get(k, 0) != v]
    other = {k: v for k, v in counts.items() if k not in want and v}
    if other:
        problems.append(f"unexpected statuses {other}")
    if result["fired"] != loaded.due or result["failed"] or result["skipped"]:
        problems.append(f"sweep result {result} (expected {loaded.due:,} fired, none failed or skipped)")
    return problems


# -- throughput -------------------------------------------------------------------------------------


def _count_statements(engine: sa.Engine) -> list[int]:
    count = [0]

    def counter(*_args: Any) -> None:
        count[0] += 1

    sa.event.listen(engine, "before_cursor_execute", counter)
    return count


def throughput(backend: Backend, template: str, loaded: Loaded, n_timers: int, now: datetime,
               warm: tuple[str, Loaded], log: Log) -> dict[str, Any]:
    d = backend.dialect
    out: dict[str, Any] = {"variants": {}, "checks": {}, "statements_per_timer": {}}
    warm_url, warm_loaded = warm
    warm_dumps = {}
    for v in VARIANTS:  # warm-up: imports, mapper set-up, caches; counts the statements per timer
        url = backend.copy(warm_url, f"warm_{v.replace('-', '_')}")
        engine = create_db_engine(url)
        count = _count_statements(engine)
        result = runner(v, d)(engine, now, None)
        out["statements_per_timer"][v] = count[0] / max(result["fired"], 1)
        problems = check_run(status_counts(engine), result, WARM_TIMERS, warm_loaded, v.endswith("domain"))
        if problems:
            raise AssertionError(f"{d} warm-up {v}: " + "; ".join(problems))
        warm_dumps[v] = dump(engine)
        engine.dispose()
        backend.drop(url)
    for v, base in BASELINE.items():
        problems = compare(warm_dumps[v], warm_dumps[base])
        if problems:
            raise AssertionError(f"{d} warm-up: {v} and {base} wrote different rows: " + "; ".join(problems))

    # Every variant on its own copy, swept CHUNK timers at a time in a rotating order, so that other
    # processes (and the disk) slow every variant alike instead of whichever ran during a bad minute.
    engines = {v: create_db_engine(backend.copy(template, f"run_{v.replace('-', '_')}")) for v in VARIANTS}
    domain_loaded, postponed = subset(loaded, DOMAIN_SHARE)
    due_of = {v: domain_loaded if v.endswith("domain") else loaded for v in VARIANTS}
    for v in VARIANTS:
        if v.endswith("domain"):
            postpone(engines[v], postponed)
    runs = {v: runner(v, d) for v in VARIANTS}
    results = {v: {"fired": 0, "failed": 0, "skipped": 0} for v in VARIANTS}
    wall = dict.fromkeys(VARIANTS, 0.0)
    cpu = dict.fromkeys(VARIANTS, 0.0)
    chunks: dict[str, list[float]] = {v: [] for v in VARIANTS}
    active = list(VARIANTS)
    turn = 0
    while active:
        shift = turn % len(VARIANTS)
        for v in VARIANTS[shift:] + VARIANTS[:shift]:
            if v not in active:
                continue
            result, timing = timed(lambda v=v: runs[v](engines[v], now, CHUNK))  # type: ignore[misc]
            wall[v] += timing.wall
            cpu[v] += timing.cpu
            chunks[v].append(timing.wall)
            for k in result:
                results[v][k] += result[k]
            if sum(result.values()) < CHUNK:  # it found no more due timers: this sweep is over
                active.remove(v)
        turn += 1
    dumps = {}
    for v in VARIANTS:
        engine = engines[v]
        counts = status_counts(engine)
        due = due_of[v]
        problems = check_run(counts, results[v], n_timers, due, v.endswith("domain"))
        dumps[v] = dump(engine)
        url = engine.url.render_as_string(hide_password=False)
        engine.dispose()
        backend.drop(url)
        out["checks"][f"{v}: {due.due:,} fired, {n_timers - due.due:,} pending"] = problems
        out["variants"][v] = {"label": LABELS[v], "due": due.due, "wall_s": wall[v], "cpu_s": cpu[v],
                              "per_s": due.due / wall[v], "ms_per_timer": 1000 * wall[v] / due.due,
                              "result": results[v], "counts": counts, "calls": len(chunks[v]),
                              "chunk_wall_s": chunks[v]}
        log(f"  {d} {v}: {due.due:,} due in {wall[v]:.2f} s ({due.due / wall[v]:,.0f}/s)"
            + (f"  CHECK FAILED: {'; '.join(problems)}" if problems else ""))
    for v, base in BASELINE.items():
        out["checks"][f"{v} rows == {base} rows"] = compare(dumps[v], dumps[base])
        e, b = out["variants"][v], out["variants"][base]
        e["baseline"] = base
        e["ratio_wall"] = e["wall_s"] / b["wall_s"]
        e["ratio_cpu"] = e["cpu_s"] / b["cpu_s"]
    return out


def profile_sweeps(backend: Backend, template: str, now: datetime, due: int, log: Log) -> dict[str, Any]:
    n = min(PROFILE_TIMERS, due)
    out: dict[str, Any] = {"timers": n}
    for v in PROFILED:
        url = backend.copy(template, f"prof_{v.replace('-', '_')}")
        engine = create_db_engine(url)
        run = runner(v, backend.dialect)
        log(f"  profiling {backend.dialect} {v} on {n:,} due timers (cProfile)...")
        out[v] = profile(lambda run=run, engine=engine: run(engine, now, n)).as_dict()  # type: ignore[misc]
        engine.dispose()
        backend.drop(url)
    return out


# -- lag --------------------------------------------------------------------------------------------


@dataclass
class LagRun:
    backend: Backend
    url: str
    start: datetime
    due_ids: list[int]
    expected: int
    scheduler: Any = None
    runtime: Any = None
    done_at: float | None = None
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # job id -> runs, durations, skipped ticks

    def listen(self, scheduler: Any) -> None:
        """Time every run of every job (submitted -> executed) and count the ticks skipped because the
        previous run was still going (``max_instances=1``), through APScheduler's events."""
        submitted: dict[str, float] = {}

        def on_event(event: Any) -> None:
            job = self.jobs.setdefault(event.job_id, {"runs": 0, "durations_s": [], "skipped": 0})
            if event.code == EVENT_JOB_SUBMITTED:
                submitted[event.job_id] = time.monotonic()
            elif event.code == EVENT_JOB_MAX_INSTANCES:
                job["skipped"] += 1
            elif event.job_id in submitted:
                job["runs"] += 1
                job["durations_s"].append(time.monotonic() - submitted.pop(event.job_id))

        scheduler.add_listener(on_event, EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR
                               | EVENT_JOB_MAX_INSTANCES)


def prepare_lag(backend: Backend, template: str, cast: Cast, ids: Ids, template_now: datetime, start: datetime,
                window: float, rate: float, seed: int) -> LagRun:
    """A copy of the template with its due timers moved a year ahead, and the trickle: ``rate`` timers a
    second due from ``start`` for ``window`` seconds."""
    url = backend.copy(template, "lag")
    engine = create_db_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            due = list(conn.execute(sa.select(TIMERS.c.id).where(
                TIMERS.c.status == PENDING, TIMERS.c.available_at <= template_now)).scalars())
        postpone(engine, due)
        n = round(rate * window)
        due_times = [start + timedelta(seconds=(k + 0.5) / rate) for k in range(n)]
        loaded = load(engine, cast, Ids(**ids.as_dict()), now=start, due_times=due_times, n_future=0, seed=seed)
    finally:
        engine.dispose()
    return LagRun(backend, url, start, loaded.due_ids, loaded.due)


def _pending(run: LagRun) -> int:
    """Trickle timers not yet fired, read without disturbing the scheduler (a plain read on SQLite: our
    engines would begin IMMEDIATE and queue behind the sweep)."""
    if run.backend.dialect == "sqlite":
        con = sqlite3.connect(run.url.removeprefix("sqlite:///"))
        try:
            ids = ",".join(map(str, run.due_ids))
            return int(con.execute(f"SELECT count(*) FROM wf_timers WHERE id IN ({ids}) AND status = 'pending'")
                       .fetchone()[0])
        finally:
            con.close()
    engine = sa.create_engine(run.url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(TIMERS).where(
                TIMERS.c.id.in_(run.due_ids), TIMERS.c.status == PENDING)).scalar_one())
    finally:
        engine.dispose()


def percentile(values: list[float], q: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)] if ordered else float("nan")


def lag(runs: list[LagRun], interval: float, window: float, log: Log) -> dict[str, Any]:
    try:
        for run in sorted(runs, key=lambda r: r.start):
            env = {"REPRISALS_ENV": "test", "REPRISALS_DATABASE_URL": run.url, "REPRISALS_SECRET_KEY": "b" * 40,
                   "REPRISALS_ENCRYPTION_KEYS": TEST_KEY, "REPRISALS_BASE_URL": BASE_URL}
            if interval != 15.0:
                env["REPRISALS_SCHEDULER_INTERVAL"] = str(interval)
            settings = load_settings(env, dotenv=None)
            assert settings.scheduler_interval == interval
            run.runtime = Runtime.from_settings(settings)
            wait = (run.start - datetime.now(UTC)).total_seconds()
            if wait > 0:
                time.sleep(wait)
            run.scheduler = build_scheduler(run.runtime, blocking=False)  # the configured channels
            run.listen(run.scheduler)
            run.scheduler.start()
            log(f"  {run.backend.dialect}: scheduler started (late by "
                f"{(datetime.now(UTC) - run.start).total_seconds():.2f} s); {run.expected} timers due over "
                f"{window:.0f} s")
        deadline = max(r.start for r in runs) + timedelta(seconds=window + 3 * interval + 30)
        while datetime.now(UTC) < deadline:
            time.sleep(1.0)
            for run in runs:
                if run.done_at is None and datetime.now(UTC) > run.start + timedelta(seconds=window) \
                        and _pending(run) == 0:
                    run.done_at = time.monotonic()
                    run.scheduler.shutdown(wait=True)
            if all(r.done_at is not None for r in runs):
                break
    finally:
        for run in runs:
            if run.scheduler is not None and run.done_at is None:
                run.scheduler.shutdown(wait=True)
    out: dict[str, Any] = {}
    for run in runs:
        engine = run.runtime.db
        with engine.connect() as conn:
            rows = conn.execute(sa.select(TIMERS.c.fire_at, TIMERS.c.fired_at, TIMERS.c.status, TIMERS.c.kind)
                                .where(TIMERS.c.id.in_(run.due_ids)).order_by(TIMERS.c.fired_at)).all()
            outbox = conn.execute(sa.select(OUTBOX.c.status, sa.func.count()).group_by(OUTBOX.c.status)).all()
        run.runtime.close()
        fired = [r for r in rows if r.status == FIRED]
        lags = [(r.fired_at - r.fire_at).total_seconds() for r in fired]
        p50, p99 = percentile(lags, 50), percentile(lags, 99)
        out[run.backend.dialect] = {
            "interval_s": interval, "window_s": window, "rate_per_s": run.expected / window,
            "timers": run.expected, "fired": len(fired), "unfired": run.expected - len(fired),
            "p50_s": p50, "p99_s": p99, "max_s": max(lags) if lags else float("nan"),
            "min_s": min(lags) if lags else float("nan"),
            "ratio_p99": p99 / interval, "target_s": interval + LAG_SLACK_S,
            "met": len(fired) == run.expected and p99 <= interval + LAG_SLACK_S,
            "jobs": {job: {**j, "max_s": max(j["durations_s"], default=0.0)} for job, j in run.jobs.items()},
            "outbox": {s: n for s, n in outbox},
        }
        e = out[run.backend.dialect]
        log(f"  {run.backend.dialect}: {e['fired']}/{e['timers']} fired; lag p50 {p50:.2f} s, p99 {p99:.2f} s, "
            f"max {e['max_s']:.2f} s")
        run.backend.drop(run.url)
    return out


# -- the benchmark ----------------------------------------------------------------------------------


def run(n_timers: int, n_due: int, *, lag_seconds: float, interval: float, force_profile: bool = False,
        log: Log = print) -> dict[str, Any]:
    started = time.perf_counter()
    bes, notes = backends(log)
    results: dict[str, Any] = {"timers": n_timers, "due": n_due, "notes": notes, "aim_per_s": AIM_PER_S,
                               "databases": {}, "throughput": {}, "lag": {}}
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        prepared = {}
        for be in bes:
            results["databases"][be.dialect] = be.settings()
            w0 = time.perf_counter()
            warm_url, _wc, _wi, warm_loaded = prepare_template(be, "warm", WARM_TIMERS, WARM_DUE, now, seed=7)
            url, cast, ids, loaded = prepare_template(be, "template", n_timers, n_due, now, seed=42)
            results["databases"][be.dialect]["load_s"] = time.perf_counter() - w0
            log(f"  {be.dialect}: loaded {loaded.timers:,} timers ({loaded.due:,} due) in "
                f"{time.perf_counter() - w0:.1f} s")
            prepared[be.dialect] = (url, cast, ids, loaded)
            results["throughput"][be.dialect] = throughput(be, url, loaded, n_timers, now, (warm_url, warm_loaded),
                                                           log)
            be.drop(warm_url)
        for be in bes:
            tp = results["throughput"][be.dialect]
            missed = [v for v in PROFILED if tp["variants"][v]["per_s"] < AIM_PER_S]
            if force_profile or missed:
                tp["profile"] = profile_sweeps(be, prepared[be.dialect][0], now, n_due, log)

        window = max(interval, round(lag_seconds / interval) * interval)  # whole intervals: lags spread evenly
        first = datetime.now(UTC) + timedelta(seconds=5 + 3 * len(bes))
        runs = []
        for k, be in enumerate(sorted(bes, key=lambda b: b.dialect != "postgresql")):
            url, cast, ids, _loaded = prepared[be.dialect]
            start = first + timedelta(seconds=k * interval / 2)  # ticks half an interval apart
            runs.append(prepare_lag(be, url, cast, ids, now, start, window, TRICKLE_RATE, seed=99 + k))
        log(f"  lag: {TRICKLE_RATE} timers/s due for {window:.0f} s, scheduler interval {interval:g} s "
            f"({', '.join(r.backend.dialect for r in runs)} at once, ticks {interval / 2:g} s apart)")
        results["lag"] = lag(runs, interval, window, log)
    finally:
        for be in bes:
            be.close()
    results["elapsed_s"] = time.perf_counter() - started
    return results


def _aim(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def render(results: dict[str, Any]) -> str:
    n, due = results["timers"], results["due"]
    rows = []
    for dialect, tp in results["throughput"].items():
        for v in VARIANTS:
            e = tp["variants"][v]
            rows.append((f"{dialect}: {e['label']}", fmt_int(e["due"]), f"{e['wall_s']:.2f}", f"{e['cpu_s']:.2f}",
                         fmt_int(e["per_s"]),
                         f"{e['ms_per_timer']:.2f}", f"{tp['statements_per_timer'][v]:.1f}",
                         fmt_ratio(e["ratio_wall"]) if "ratio_wall" in e else "1 (baseline)",
                         fmt_ratio(e["ratio_cpu"]) if "ratio_cpu" in e else "1 (baseline)",
                         _aim(e["per_s"] >= AIM_PER_S) if v in BASELINE else ""))
    title = (f"3a. Deadline sweep throughput: {fmt_int(n)} pending timers, {fmt_int(due)} due (baselines commit per "
             "timer, sweeps per batch)")
    out = [table(["database: variant", "due", "wall s", "cpu s", "due/s", "ms/timer", "SQL/timer", "ratio (wall)",
                  "ratio (cpu)", f"aim >= {AIM_PER_S:,.0f}/s"], rows, title=title)]
    dbs = []
    for dialect, s in results["databases"].items():
        if dialect == "sqlite":
            dbs.append(f"  sqlite {s['version']}: journal {s['journal_mode']}, synchronous {s['synchronous']}, "
                       f"file on {s['filesystem']} ({s['folder']}); template loaded in {s['load_s']:.0f} s")
        else:
            dbs.append(f"  PostgreSQL {s['server_version']}: fsync {s['fsync']}, synchronous_commit "
                       f"{s['synchronous_commit']}, shared_buffers {s['shared_buffers']}, on 127.0.0.1; template "
                       f"loaded in {s['load_s']:.0f} s")
    out.append("Databases:\n" + "\n".join(dbs + [f"  {note}" for note in results["notes"]]) + "\n"
               f"  The variants take turns of {CHUNK} timers (sweep_due(limit={CHUNK})), in a rotating order; the "
               f"domain handler's pair\n  sweeps one due timer in {DOMAIN_SHARE} (the others postponed: the table "
               "still holds every pending timer).\n"
               "  ratio = time / its baseline's time, same run; SQL/timer = statements sent per due timer\n"
               "  (SQLite's BEGIN IMMEDIATE included; PostgreSQL's pool pre-ping is not a statement and not\n"
               "  counted; executemany counts once). The sweep claims and commits a batch of timers at a time\n"
               "  (workflow.sweep.BATCH_SIZE) and also issues SAVEPOINT/RELEASE and reads the instances; the\n"
               "  baselines hold one connection and commit per timer, the sweep's session returns its connection\n"
               "  to the pool at every commit.")
    lines = []
    for dialect, tp in results["throughput"].items():
        for name, problems in tp["checks"].items():
            lines.append(f"  {dialect} {name}: {'OK' if not problems else 'FAILED: ' + '; '.join(problems)}")
    out.append("Checks (after every run; sweep and baseline rows compared row by row):\n" + "\n".join(lines))

    lag_rows = []
    jobs = []
    for dialect, e in results["lag"].items():
        sweep = e["jobs"].get(SWEEP_JOB_ID, {"runs": 0, "max_s": 0.0, "skipped": 0})
        lag_rows.append((dialect, f"{e['interval_s']:g}", f"{e['fired']}/{e['timers']}",
                         f"{e['rate_per_s']:g}", f"{e['window_s']:.0f}", f"{e['p50_s']:.2f}", f"{e['p99_s']:.2f}",
                         f"{e['max_s']:.2f}", f"{sweep['max_s']:.2f}", fmt_ratio(e["ratio_p99"]),
                         f"<= {e['target_s']:g} s: {_aim(e['met'])}"))
        for job, j in sorted(e["jobs"].items()):
            jobs.append(f"  {dialect} {job}: {j['runs']} runs, longest {j['max_s']:.2f} s, "
                        f"{j['skipped']} ticks skipped (previous run still going)")
        jobs.append(f"  {dialect} outbox at the end: "
                    + ", ".join(f"{n:,} {status}" for status, n in sorted(e["outbox"].items())))
    if lag_rows:
        out.append(table(["database", "interval s", "fired", "due/s", "window s", "p50 lag s", "p99 lag s",
                          "max lag s", "longest sweep s", "p99/interval", "aim p99 <= interval + 1 s"], lag_rows,
                         title="3b. Lag (fired_at - fire_at) under a steady trickle, real scheduler and clock "
                               "(sweep + delivery jobs, domain handler)")
                   + "\n  Timers are swept oldest first, so a timer due just after a tick waits one interval; lags "
                     "spread over\n  (0, interval] and p99 is about 0.99 x interval while a sweep fires faster than "
                     "timers fall due.\n  Jobs (APScheduler events, submitted to done):\n" + "\n".join(jobs))
    for dialect, tp in results["throughput"].items():
        if "profile" in tp:
            for v in PROFILED:
                p = tp["profile"][v]
                summary = ProfileSummary(p["total_s"], p["areas"], p["top_self"], p["top_ours"])
                out.append(summary.render(f"Profile: {dialect}, {LABELS[v]}, {tp['profile']['timers']:,} due timers "
                                          "(cProfile; profiling inflates Python-heavy code)"))
    if "elapsed_s" in results:
        out.append(f"(benchmark 3 took {results['elapsed_s']:.0f} s: loading, warm-ups, sweeps, profiles, lag run)")
    return "\n\n".join(out)
