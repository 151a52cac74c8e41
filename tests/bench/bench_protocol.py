"""Benchmark 1: the full protocol path on SQLite, against plain SQLAlchemy Core doing the same writes.

For each of N cases: open -> record_consent_and_risk -> refer -> record_response -> accept_response
-> complete_follow_up -> close, committing after every step (7 transactions, 6 transitions).

Variants, each on a fresh SQLite file made with ``workflow.db.create_all`` and the product's
``create_db_engine`` (WAL, ``BEGIN IMMEDIATE``, its connection pool):

* ``services``: the real services (``open_case``, ``advance_case``) with the real Engine from
  ``build_engine`` (so deadline and timer rows are written on every stage change, as in the product);
  one session per case (``expire_on_commit=False``, as ``Runtime`` makes them), committed per step.
* ``services-requests``: the same, but every step is its own unit of work as a web request would do
  it: a new session, the user loaded, the case loaded with ``get_case``, then advanced.
* ``core``: the baseline. The same rows written with plain SQLAlchemy Core statements (the same
  tables and values, the same hash chains, encryption, deadlines and timers, compare-and-set
  updates), no reads beyond the ones the services make themselves. Round 1 checks that both
  databases end up with identical rows (ciphertexts excepted: Fernet tokens are randomised).
* ``engine``: ``Engine.start`` and ``Engine.fire`` on bare workflow instances (no domain rows, no
  listeners); its baseline ``core-engine`` writes only the engine's rows with Core.

The variants run side by side, case by case in a rotating order, each on its own database, so that
disk and CPU noise (fsync latency, other processes) falls on all of them alike. A ratio is a
variant's total time divided by its baseline's in the same round; the median over rounds is reported.
"""

from __future__ import annotations

import gc
import hashlib
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session, sessionmaker

import reprisals.models  # noqa: F401  (registers the domain's tables on the shared MetaData)
from reprisals.crypto import Cipher
from reprisals.models import AgeGroup, Channel, Consent, Outcome, Risk, Role, User
from reprisals.protocol import GUARDS, SPEC_KEY, build_engine, bundled_specs
from reprisals.services import advance_case, get_case, open_case
from tests.bench.common import ProfileSummary, fmt_int, fmt_ratio, median, profile, table
from tests.factories import (
    ACCEPT,
    CLOSE,
    CONSENT,
    FOLLOW_UP,
    REFER,
    RESPONSE,
    case_data,
    cipher,
    make_establishment,
    make_user,
)
from workflow.calendars import DEFAULT_DAY_END, calendar_for
from workflow.db import create_all, create_db_engine
from workflow.engine import Engine, SimpleActor
from workflow.models import metadata
from workflow.spec import STAGE_ENTRY, WorkflowSpec

T0 = datetime(2025, 4, 16, 9, 30, tzinfo=UTC)
STEPS = 6  # transitions per case (plus the opening transaction)
TRANSACTIONS = STEPS + 1

# (trigger, fields, who) along the happy path; a second lead confirms the finding.
PATH: list[tuple[str, dict[str, Any], str]] = [
    ("record_consent_and_risk", CONSENT, "lead"),
    ("refer", REFER, "lead"),
    ("record_response", RESPONSE, "lead"),
    ("accept_response", ACCEPT, "lead"),
    ("complete_follow_up", FOLLOW_UP, "lead"),
    ("close", CLOSE, "second_lead"),
]
STAGES = ["reported", "triage", "referred", "assessment", "follow_up", "closure_review", "closed"]


def step_time(k: int) -> datetime:
    """Step k happens k minutes after the opening, so every timestamp column really changes."""
    return T0 + timedelta(minutes=k)


# -- databases ------------------------------------------------------------------------------------


@dataclass
class Cast:
    establishment_id: int
    staff: User
    lead: User
    second_lead: User
    data: dict[str, Any]  # a new case's form data (tests.factories.case_data)

    def user(self, who: str) -> User:
        return {"staff": self.staff, "lead": self.lead, "second_lead": self.second_lead}[who]


@dataclass
class BenchDB:
    path: Path
    engine: sa.Engine
    cast: Cast

    def sessions(self) -> sessionmaker[Session]:
        return sessionmaker(self.engine, expire_on_commit=False)


def fresh_db(folder: Path, name: str) -> BenchDB:
    """A new database file, created and configured as the product does it."""
    path = folder / f"{name}.db"
    engine = create_db_engine(f"sqlite:///{path}")
    create_all(engine)
    with sessionmaker(engine, expire_on_commit=False)() as s:
        est = make_establishment(s, name="HMP Bench")
        cast = Cast(est.id, make_user(s, role=Role.STAFF, body="IMB"), make_user(s, role=Role.LEAD, body="IMB"),
                    make_user(s, role=Role.LEAD, body="IMB"), case_data(est))
        s.commit()
    return BenchDB(path, engine, cast)


DUMP_EXCLUDE = {"description_ciphertext", "name_ciphertext", "number_ciphertext", "date_of_birth_ciphertext"}
DUMP_TABLES = ("wf_instances", "wf_history", "wf_ledger", "wf_chain_heads", "wf_deadlines", "wf_timers",
               "case_sequences", "cases",
               "case_parties", "detainees", "case_contacts")


def dump(engine: sa.Engine, tables: tuple[str, ...] = DUMP_TABLES) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables the benchmark writes (ciphertexts excepted), ordered by key."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for name in tables:
            t = metadata.tables[name]
            cols = [c for c in t.columns if c.name not in DUMP_EXCLUDE]
            order = list(t.primary_key.columns) or cols
            out[name] = [tuple(r) for r in conn.execute(sa.select(*cols).order_by(*order))]
    return out


def compare(a: dict[str, list[tuple[Any, ...]]], b: dict[str, list[tuple[Any, ...]]]) -> list[str]:
    problems = []
    for name in a:
        if a[name] != b.get(name):
            first = next((i for i, (x, y) in enumerate(zip(a[name], b.get(name, []), strict=False)) if x != y), None)
            problems.append(f"{name}: {len(a[name])} vs {len(b.get(name, []))} rows"
                            + (f"; first difference at row {first}: {a[name][first]} != {b[name][first]}"
                               if first is not None else ""))
    return problems


# -- the ORM paths (each factory returns a function that takes one case through the protocol) ------

CaseRun = Callable[[], None]


def services(db: BenchDB, wf: Engine, key: Cipher) -> CaseRun:
    """One session per case, committed after each step."""
    sessions = db.sessions()
    cast = db.cast
    data = cast.data

    def one() -> None:
        with sessions() as s:
            case = open_case(s, wf, key, cast.staff, T0, data)
            s.commit()
            for k, (trigger, fields, who) in enumerate(PATH, 1):
                advance_case(s, wf, cast.user(who), case, trigger, fields, step_time(k))
                s.commit()
            assert case.stage == "closed"

    return one


def services_requests(db: BenchDB, wf: Engine, key: Cipher) -> CaseRun:
    """Every step its own unit of work: new session, load the user and the case, act, commit."""
    sessions = db.sessions()
    cast = db.cast
    ids = {who: cast.user(who).id for who in ("staff", "lead", "second_lead")}
    data = cast.data

    def one() -> None:
        with sessions() as s, s.begin():
            staff = s.get(User, ids["staff"])
            assert staff is not None
            reference = open_case(s, wf, key, staff, T0, data).reference
        for k, (trigger, fields, who) in enumerate(PATH, 1):
            with sessions() as s, s.begin():
                user = s.get(User, ids[who])
                assert user is not None
                case = get_case(s, user, reference)
                advance_case(s, wf, user, case, trigger, fields, step_time(k))
        assert case.stage == "closed"

    return one


ACTOR = SimpleActor("1", frozenset({"staff", "lead"}))
# What open_case starts a case's instance with (received 2025-04-16 10:00 London time).
START_VARIABLES = {"received_at": "2025-04-16T09:00:00+00:00", "triage_from": "2025-04-16T09:00:00+00:00",
                   "risk": "standard", "escalation_level": 0}


def bare_engine() -> Engine:
    """The protocol's guards and specs on an Engine with no listeners (no deadline timers)."""
    wf = Engine(guards=dict(GUARDS))
    for spec in bundled_specs():
        wf.register(spec)
    return wf


def engine_only(db: BenchDB, wf: Engine) -> CaseRun:
    """The bare engine: start an instance and fire the six triggers, committing after each."""
    sessions = db.sessions()

    def one() -> None:
        with sessions() as s:
            instance = wf.start(s, SPEC_KEY, ACTOR, T0, variables=START_VARIABLES, calendar="england")
            s.commit()
            for k, (trigger, fields, _who) in enumerate(PATH, 1):
                wf.fire(s, instance, trigger, ACTOR, fields, step_time(k))
                s.commit()
            assert instance.stage == "closed"

    return one


# -- the Core baselines ---------------------------------------------------------------------------


def _digest(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass
class _Step:
    """What one step of the happy path writes, as a hand-written implementation would know it."""

    trigger: str
    fields: dict[str, Any]
    who: str
    variables: dict[str, Any] = field(default_factory=dict)  # variables the spec sets (fields, ``set``)
    case_update: Callable[[datetime], dict[str, Any]] | None = None
    contact: dict[str, Any] | None = None
    host: Callable[[datetime], dict[str, Any]] | None = None  # variables the service sets (recorded in history)


def _service_steps(cast: Cast) -> list[_Step]:
    lead = str(cast.lead.id)
    return [
        _Step("record_consent_and_risk", CONSENT, "lead", {"consent": "full", "risk": "standard"},
              lambda now: {"consent": Consent.FULL, "consent_date": date(2025, 4, 16)}),
        _Step("refer", REFER, "lead", {"escalation_level": 0},
              contact={"kind": "referral", "recipients": ["head_of_establishment"], "on": date(2025, 4, 17)}),
        _Step("record_response", RESPONSE, "lead",
              contact={"kind": "response", "recipients": [], "on": date(2025, 5, 2)}),
        _Step("accept_response", ACCEPT, "lead", {"proposed_finding": "substantiated"},
              host=lambda now: {"finding_proposed_by": lead}),
        _Step("complete_follow_up", FOLLOW_UP, "lead"),
        _Step("close", CLOSE, "second_lead", {"outcome": "substantiated"},
              lambda now: {"outcome": Outcome.SUBSTANTIATED, "closed_at": now},
              host=lambda now: {"closed_at": now.isoformat()}),
    ]


def _engine_steps() -> list[_Step]:
    return [
        _Step("record_consent_and_risk", CONSENT, "lead", {"consent": "full", "risk": "standard"}),
        _Step("refer", REFER, "lead", {"escalation_level": 0}),
        _Step("record_response", RESPONSE, "lead"),
        _Step("accept_response", ACCEPT, "lead", {"proposed_finding": "substantiated"}),
        _Step("complete_follow_up", FOLLOW_UP, "lead"),
        _Step("close", CLOSE, "second_lead", {"outcome": "substantiated"}),
    ]


class _CoreWorkflow:
    """The engine's writes (instance, chained history, ledger) and, optionally, the deadline and
    timer rows of the stage entered, in plain Core."""

    def __init__(self, spec: WorkflowSpec | None) -> None:
        t = metadata.tables
        self.spec = spec  # None: no deadlines (the bare engine has no timer listener)
        i, h, heads = t["wf_instances"], t["wf_history"], t["wf_chain_heads"]
        self.instances = i
        self.insert_instance = i.insert().returning(i.c.id)
        self.insert_event = h.insert()
        self.select_head = sa.select(heads.c.seq, heads.c.hash).where(heads.c.name == "ledger")
        self.insert_ledger = t["wf_ledger"].insert()
        self.move_head = heads.update().where(heads.c.name == "ledger", heads.c.seq == sa.bindparam("old_seq"))
        d, tm = t["wf_deadlines"], t["wf_timers"]
        self.insert_deadline = d.insert().returning(d.c.id)
        self.insert_timer = tm.insert()
        self.cancel_timers = (tm.update().where(tm.c.instance_id == sa.bindparam("iid"), tm.c.status == "pending")
                              .values(status="cancelled"))
        self.close_deadlines = (d.update().where(d.c.instance_id == sa.bindparam("iid"),
                                                 d.c.status.in_(("open", "paused", "overdue")))
                                .values(status="done", closed_at=sa.bindparam("now")))

    def start(self, conn: sa.Connection, now: datetime, variables: dict[str, Any], data: dict[str, Any],
              actor_id: str) -> tuple[int, str]:
        instance_id = conn.execute(self.insert_instance, {
            "spec_key": SPEC_KEY, "spec_version": 1, "stage": "reported", "variables": variables,
            "calendar": "england", "created_at": now, "stage_entered_at": now, "updated_at": now,
            "head_seq": 0, "head_hash": "", "version": 1}).scalar_one()
        genesis = hashlib.sha256(f"wf-instance:{instance_id}".encode()).hexdigest()
        h = self.event(conn, instance_id, 1, "created", None, None, "reported", actor_id, now,
                       {"spec": f"{SPEC_KEY}@1", **data}, genesis)
        self.move(conn, instance_id, 1, {"head_seq": 1, "head_hash": h})
        head = conn.execute(self.select_head).one()
        seq = head.seq + 1
        ledger_h = _digest({"seq": seq, "instance": instance_id, "genesis": h, "prev": head.hash})
        conn.execute(self.insert_ledger, {"seq": seq, "instance_id": instance_id, "genesis_hash": h,
                                          "prev_hash": head.hash, "hash": ledger_h})
        if conn.execute(self.move_head, {"old_seq": head.seq, "seq": seq, "hash": ledger_h}).rowcount != 1:
            raise RuntimeError("ledger head moved")
        self.enter(conn, instance_id, 1, "reported", variables, now, leaving=False)
        return instance_id, h

    def event(self, conn: sa.Connection, instance_id: int, seq: int, kind: str, trigger: str | None,
              from_stage: str | None, to_stage: str, actor_id: str, now: datetime, data: dict[str, Any],
              prev: str) -> str:
        h = _digest({"instance": instance_id, "seq": seq, "kind": kind, "trigger": trigger, "from": from_stage,
                     "to": to_stage, "actor": actor_id, "at": _iso(now), "data": data, "corrects": None,
                     "prev": prev})
        conn.execute(self.insert_event, {
            "instance_id": instance_id, "seq": seq, "kind": kind, "trigger": trigger, "from_stage": from_stage,
            "to_stage": to_stage, "actor_id": actor_id, "at": now, "data": data, "corrects_seq": None,
            "prev_hash": prev, "hash": h})
        return h

    def move(self, conn: sa.Connection, instance_id: int, version: int, values: dict[str, Any]) -> None:
        """Update the instance row with a compare-and-set on its version (what version_id_col does)."""
        i = self.instances
        stmt = i.update().where(i.c.id == instance_id, i.c.version == version).values(**values, version=version + 1)
        if conn.execute(stmt).rowcount != 1:
            raise RuntimeError("stale instance")

    def enter(self, conn: sa.Connection, instance_id: int, seq: int, stage: str, variables: dict[str, Any],
              now: datetime, *, leaving: bool) -> None:
        """Close the deadlines of the stage left, open those of the stage entered, with their timers."""
        if self.spec is None:
            return
        if leaving:
            conn.execute(self.cancel_timers, {"iid": instance_id})
            conn.execute(self.close_deadlines, {"iid": instance_id, "now": now})
        st = self.spec.stages[stage]
        if st.final or not st.deadlines:
            return
        cal = calendar_for("england", DEFAULT_DAY_END)
        for dl in st.deadlines:
            duration = dl.due.for_variables(variables) if dl.applies_to(variables) else None
            if duration is None:
                continue
            anchor = now if dl.anchor == STAGE_ENTRY else datetime.fromisoformat(variables[dl.anchor]).astimezone(UTC)
            due = cal.due(anchor, duration)
            deadline_id = conn.execute(self.insert_deadline, {
                "instance_id": instance_id, "entry_seq": seq, "stage": stage, "name": dl.name, "label": dl.label,
                "action": dl.on_due, "unit": duration.unit.value, "amount": duration.amount,
                "reminders": [r.short() for r in dl.reminders], "anchor_at": anchor, "due_at": due,
                "status": "open", "generation": 1, "created_at": now}).scalar_one()
            timers = [{"kind": "due", "ordinal": 0, "fire_at": due, "available_at": due}]
            for n, reminder in enumerate(dl.reminders, 1):
                at = cal.before(due, reminder)
                if now < at < due:
                    timers.append({"kind": "reminder", "ordinal": n, "fire_at": at, "available_at": at})
            conn.execute(self.insert_timer, [{"deadline_id": deadline_id, "instance_id": instance_id,
                                              "generation": 1, "status": "pending", "created_at": now, **timer}
                                             for timer in timers])

    def step(self, conn: sa.Connection, state: dict[str, Any], k: int, step: _Step, actor_id: str,
             now: datetime) -> None:
        """Move the instance along one step of the happy path: history, instance row, deadlines."""
        variables = state["variables"]
        host = step.host(now) if step.host else {}
        new_vars = {**variables, **step.variables, **host}
        seq = state["seq"] + 1
        data: dict[str, Any] = {"fields": step.fields, "variables": host} if host else {"fields": step.fields}
        head = self.event(conn, state["id"], seq, "transition", step.trigger, STAGES[k - 1], STAGES[k], actor_id,
                          now, data, state["head"])
        values: dict[str, Any] = {"stage": STAGES[k], "stage_entered_at": now, "updated_at": now,
                                  "head_seq": seq, "head_hash": head}
        if new_vars != variables:
            values["variables"] = new_vars
        self.move(conn, state["id"], state["version"], values)
        self.enter(conn, state["id"], seq, STAGES[k], new_vars, now, leaving=True)
        state.update(variables=new_vars, seq=seq, head=head, version=state["version"] + 1)


def core(db: BenchDB, key: Cipher, spec: WorkflowSpec) -> CaseRun:
    """The services' writes in plain Core: the same rows, values, hashes, ciphertexts (re-encrypted)
    and compare-and-set updates; the same two reads ``open_case`` makes; nothing else."""
    cast = db.cast
    steps = _service_steps(cast)
    w = _CoreWorkflow(spec)
    t = metadata.tables
    est_t, bodies_t, cases_t, seq_t = t["establishments"], t["bodies"], t["cases"], t["case_sequences"]
    next_ref = (sqlite.insert(seq_t).values(year=2025, last=1)
                .on_conflict_do_update(index_elements=["year"], set_={"last": seq_t.c.last + 1})
                .returning(seq_t.c.last))
    insert_case = cases_t.insert().returning(cases_t.c.id)
    insert_party, insert_detainee = t["case_parties"].insert(), t["detainees"].insert()
    insert_contact = t["case_contacts"].insert()
    data = cast.data
    received = datetime.fromisoformat(data["received_at"]).astimezone(UTC)
    staff_id = cast.staff.id

    def one() -> None:
        with db.engine.begin() as conn:
            conn.execute(sa.select(est_t).where(est_t.c.id == cast.establishment_id)).one()
            conn.execute(sa.select(bodies_t).where(bodies_t.c.code == "HMIP")).one()
            reference = f"RPR-2025-{conn.execute(next_ref).scalar_one():04d}"
            variables = dict(START_VARIABLES)
            instance_id, head = w.start(conn, T0, variables, {
                "reference": reference, "owning_body": "IMB", "establishment": cast.establishment_id,
                "risk": "standard", "channel": "imb_application"}, str(staff_id))
            case_id = conn.execute(insert_case, {
                "reference": reference, "instance_id": instance_id, "owning_body_code": "IMB",
                "establishment_id": cast.establishment_id, "receiving_user_id": staff_id,
                "assigned_user_id": staff_id, "received_at": received, "channel": Channel.IMB_APPLICATION,
                "original_contact_date": date(2025, 4, 7), "age_group": AgeGroup.ADULT,
                "sanction_types": ["loss_of_job_or_activity"], "detriment_dates": ["2025-04-08"],
                "description_ciphertext": "", "risk": Risk.STANDARD, "consent": None, "consent_date": None,
                "consent_override_reason": None, "outcome": None, "closed_at": None, "linked_case_id": None,
                "created_at": T0}).scalar_one()
            conn.execute(insert_party, {"case_id": case_id, "body_code": "HMIP"})
            conn.execute(cases_t.update().where(cases_t.c.id == case_id).values(
                description_ciphertext=key.encrypt(f"case:{case_id}:description", data["description"])))
            conn.execute(insert_detainee, {
                "case_id": case_id,
                "name_ciphertext": key.encrypt(f"detainee:{case_id}:name", data["detainee_name"]),
                "number_ciphertext": key.encrypt(f"detainee:{case_id}:number", data["detainee_number"]),
                "date_of_birth_ciphertext": key.encrypt(f"detainee:{case_id}:date_of_birth",
                                                        data["detainee_date_of_birth"])})
        state = {"id": instance_id, "variables": variables, "seq": 1, "head": head, "version": 2}
        for k, step in enumerate(steps, 1):
            now = step_time(k)
            actor_id = str(cast.user(step.who).id)
            with db.engine.begin() as conn:
                w.step(conn, state, k, step, actor_id, now)
                if step.case_update:
                    conn.execute(cases_t.update().where(cases_t.c.id == case_id).values(**step.case_update(now)))
                if step.contact:
                    conn.execute(insert_contact, {"case_id": case_id, "level": 0, "history_seq": state["seq"],
                                                  "by_user_id": int(actor_id), **step.contact})

    return one


def core_engine(db: BenchDB) -> CaseRun:
    """The bare engine's writes in plain Core."""
    w = _CoreWorkflow(None)
    steps = _engine_steps()

    def one() -> None:
        with db.engine.begin() as conn:
            variables = dict(START_VARIABLES)
            instance_id, head = w.start(conn, T0, variables, {}, ACTOR.id)
        state = {"id": instance_id, "variables": variables, "seq": 1, "head": head, "version": 2}
        for k, step in enumerate(steps, 1):
            with db.engine.begin() as conn:
                w.step(conn, state, k, step, ACTOR.id, step_time(k))

    return one


# -- the benchmark --------------------------------------------------------------------------------

VARIANTS = ("services", "services-requests", "core", "engine", "core-engine")
BASELINE = {"services": "core", "services-requests": "core", "engine": "core-engine"}
PROFILED = ("services", "core", "engine")
AIMED = ("services", "engine")  # the ratios the aim applies to; a profile is taken when one is above 2.0
LABELS = {
    "services": "services + Engine (ORM), session per case",
    "services-requests": "services + Engine (ORM), request-style",
    "core": "baseline: same writes, plain Core",
    "engine": "bare Engine.start/fire (ORM, no listeners)",
    "core-engine": "baseline: engine's writes, plain Core",
}
WARM_CASES = 3
WF_TABLES = ("wf_instances", "wf_history", "wf_ledger", "wf_chain_heads", "wf_deadlines", "wf_timers")


def _factories(wf: Engine, bare: Engine, key: Cipher) -> dict[str, Callable[[BenchDB], CaseRun]]:
    spec = wf.spec(SPEC_KEY)
    return {
        "services": lambda db: services(db, wf, key),
        "services-requests": lambda db: services_requests(db, wf, key),
        "core": lambda db: core(db, key, spec),
        "engine": lambda db: engine_only(db, bare),
        "core-engine": lambda db: core_engine(db),
    }


def _repeat(one: CaseRun, n: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(n):
            one()

    return run


def run(n_cases: int, rounds: int, *, profile_cases: int | None = None, force_profile: bool = False,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    wf, bare, key = build_engine(cipher=cipher()), bare_engine(), cipher()
    factories = _factories(wf, bare, key)
    totals: dict[str, list[list[float]]] = {v: [] for v in VARIANTS}  # per round: [wall, cpu]
    checks: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="reprisals-bench-") as tmp:
        folder = Path(tmp)
        statements: dict[str, float] = {}
        for v in VARIANTS:  # warm-up (imports, statement caches, calendars), counting SQL statements; not timed
            db = fresh_db(folder, f"warm-{v}")
            one = factories[v](db)
            one()
            count = [0]

            def counter(*_args: Any, count: list[int] = count) -> None:
                count[0] += 1

            sa.event.listen(db.engine, "before_cursor_execute", counter)
            for _ in range(WARM_CASES):
                one()
            sa.event.remove(db.engine, "before_cursor_execute", counter)
            statements[v] = count[0] / WARM_CASES
        for r in range(rounds):
            dbs = {v: fresh_db(folder, f"r{r}-{v}") for v in VARIANTS}
            ones = {v: factories[v](dbs[v]) for v in VARIANTS}
            wall = dict.fromkeys(VARIANTS, 0.0)
            cpu = dict.fromkeys(VARIANTS, 0.0)
            gc.collect()
            # Case by case, in a rotating order: disk and CPU noise (other processes, fsync latency)
            # falls on every variant alike instead of on whichever ran during a bad minute.
            for i in range(n_cases):
                shift = i % len(VARIANTS)
                for v in VARIANTS[shift:] + VARIANTS[:shift]:
                    w0, c0 = time.perf_counter(), time.process_time()
                    ones[v]()
                    wall[v] += time.perf_counter() - w0
                    cpu[v] += time.process_time() - c0
            for v in VARIANTS:
                totals[v].append([wall[v], cpu[v]])
            log(f"  round {r + 1}/{rounds}: " + ", ".join(f"{v} {wall[v]:.1f} s" for v in VARIANTS))
            if r == 0:
                full = dump(dbs["core"].engine)
                checks["services == core"] = compare(dump(dbs["services"].engine), full)
                checks["services-requests == core"] = compare(dump(dbs["services-requests"].engine), full)
                checks["engine == core-engine"] = compare(dump(dbs["engine"].engine, WF_TABLES),
                                                          dump(dbs["core-engine"].engine, WF_TABLES))
            for db in dbs.values():
                db.engine.dispose()
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{db.path}{suffix}").unlink(missing_ok=True)

        transitions = n_cases * STEPS
        results: dict[str, Any] = {"cases": n_cases, "rounds": rounds, "transitions_per_run": transitions,
                                   "transactions_per_run": n_cases * TRANSACTIONS, "variants": {}, "checks": checks,
                                   "statements_per_case": statements}
        for v in VARIANTS:
            wall_s = median([t[0] for t in totals[v]])
            cpu_s = median([t[1] for t in totals[v]])
            entry: dict[str, Any] = {"label": LABELS[v], "wall_s": wall_s, "cpu_s": cpu_s,
                                     "transitions_per_s": transitions / wall_s,
                                     "ms_per_transaction": 1000 * wall_s / (n_cases * TRANSACTIONS),
                                     "rounds": totals[v]}
            if v in BASELINE:
                base = totals[BASELINE[v]]
                entry["baseline"] = BASELINE[v]
                entry["ratio_wall"] = median([a[0] / b[0] for a, b in zip(totals[v], base, strict=True)])
                entry["ratio_cpu"] = median([a[1] / b[1] for a, b in zip(totals[v], base, strict=True)])
            results["variants"][v] = entry

        # The aim (<= 2.0) is for the product's configuration; the other pairs are for explanation.
        worst = max(results["variants"][v]["ratio_wall"] for v in AIMED)
        if force_profile or worst > 2.0:
            m = profile_cases or max(20, n_cases // 3)
            log(f"  profiling the services path, its Core baseline and the bare engine on {m} cases (cProfile)...")
            ones = {v: factories[v](fresh_db(folder, f"prof-{v}")) for v in PROFILED}
            results["profile"] = {"cases": m, **{v: profile(_repeat(one, m)).as_dict() for v, one in ones.items()}}
    return results


def render(results: dict[str, Any]) -> str:
    rows = []
    for v in VARIANTS:
        e = results["variants"][v]
        rows.append((e["label"], f"{e['wall_s']:.2f}", f"{e['cpu_s']:.2f}", fmt_int(e["transitions_per_s"]),
                     f"{e['ms_per_transaction']:.2f}", f"{results['statements_per_case'][v]:.0f}",
                     fmt_ratio(e["ratio_wall"]) if "ratio_wall" in e else "1 (baseline)",
                     fmt_ratio(e["ratio_cpu"]) if "ratio_cpu" in e else "1 (baseline)"))
    title = (f"1. Protocol path on SQLite: {results['cases']} cases x {STEPS} transitions, commit per step "
             f"({results['transactions_per_run']} transactions per variant), median of {results['rounds']} round(s)")
    out = [table(["variant", "wall s", "cpu s", "transitions/s", "ms/txn", "SQL/case", "ratio (wall)", "ratio (cpu)"],
                 rows, title=title)]
    verdict = []
    for v in BASELINE:
        e = results["variants"][v]
        mark = "OK" if e["ratio_wall"] <= 2.0 else "ABOVE 2.0"
        verdict.append(f"  {e['label']}: {fmt_ratio(e['ratio_wall'])} wall, {fmt_ratio(e['ratio_cpu'])} cpu "
                       f"vs '{LABELS[e['baseline']]}'  [{mark}, aim <= 2.00x]")
    notes = ("  wall = elapsed time; cpu = this process's CPU time (excludes waiting on fsync and other processes).\n"
             "  Every commit waits for fsync on both sides: a slow or busy disk adds the same time to both, so the\n"
             "  wall ratio falls as the disk slows down; the cpu ratio is the steadier measure of our overhead.\n"
             "  SQL/case = statements sent to SQLite per case, BEGIN IMMEDIATE included (7 transactions a case).\n"
             "  The services and the Core baseline both write deadlines and timers (build_engine attaches Timers);\n"
             "  the bare engine and its baseline do not. request-style also loads the user and the case each step;\n"
             "  its baseline does not read them.")
    out.append("Ratios (time / baseline time, same round, median over rounds):\n" + "\n".join(verdict) + "\n" + notes)
    lines = [f"  {name}: {'identical rows' if not problems else 'DIFFERENT: ' + '; '.join(problems)}"
             for name, problems in results["checks"].items()]
    out.append("Same writes? (round 1: every table written compared row by row; ciphertext columns excepted)\n"
               + "\n".join(lines))
    if "profile" in results:
        for name in PROFILED:
            p = results["profile"][name]
            summary = ProfileSummary(p["total_s"], p["areas"], p["top_self"], p["top_ours"])
            out.append(summary.render(f"Profile: {LABELS[name]}, {results['profile']['cases']} cases (cProfile; "
                                      "profiling inflates Python-heavy code)"))
    return "\n\n".join(out)
