"""Migration 0017, down and up with cases in the database: the downgrade opens every seal and gives back the
format-1 chains (whose heads are the ones the upgrade recorded as old); the upgrade without the encryption
keys refuses in words and changes nothing; with them it seals every sensitive value with the case's own key,
rebuilds every chain and the ledger in format 2, records each old head beside its new one, and all verifies."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

import migrations
from reprisals.models import Case, CaseNote, Role, User
from reprisals.protocol import build_engine
from reprisals.sealing import SEALED, CaseKey
from reprisals.services import (
    add_note,
    advance_case,
    assign_case,
    event_data,
    open_case,
    read_description,
    read_note,
    read_override_reason,
    view_identity,
)
from tests.conftest import EmptyDatabase
from tests.factories import (
    CANARY_DESCRIPTION,
    CANARY_NAME,
    TEST_KEY,
    case_data,
    cipher,
    make_establishment,
    make_user,
)
from workflow.db import create_db_engine
from workflow.history import LEDGER_GENESIS, genesis_hash, verify
from workflow.models import ChainRebuild, HistoryEvent, WorkflowInstance

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
NOTE = "Spoke to CANARYNOTE77 on the wing"
WHY = "Letter to the governor CANARYREASON55"
OVERRIDE_REASON = "Threats to kill CANARYOVERRIDE33"
TYPED = "Area manager CANARYRECIPIENT11"
SUMMARY = "The person said CANARYSUMMARY99"
CANARIES = ("CANARYNOTE77", "CANARYREASON55", "CANARYOVERRIDE33", "CANARYRECIPIENT11", "CANARYSUMMARY99",
            CANARY_NAME, "CANARYTEXT42")


def _populate(url: str) -> list[str]:
    engine = create_db_engine(url)
    wf = build_engine(cipher=cipher())
    try:
        with sessionmaker(engine, expire_on_commit=False)() as s:
            est = make_establishment(s)
            staff = make_user(s, role=Role.STAFF, body="IMB")
            lead = make_user(s, role=Role.LEAD, body="IMB")
            refs = []
            full = open_case(s, wf, cipher(), staff, T0, case_data(est))
            advance_case(s, wf, staff, full, "record_consent_and_risk",
                         {"consent": "full", "risk": "standard", "risk_reason": SUMMARY}, T0)
            advance_case(s, wf, lead, full, "refer", {"recipients": ["head_of_establishment"]}, T0)
            advance_case(s, wf, lead, full, "escalate", {"reason": "overdue", "recipient": "other",
                                                         "recipient_other": TYPED}, T0 + timedelta(days=20))
            add_note(s, wf, cipher(), lead, full, NOTE, T0 + timedelta(days=20))
            view_identity(s, wf, cipher(), lead, full, WHY, T0 + timedelta(days=20))
            assign_case(s, wf, lead, full, staff, T0 + timedelta(days=20), reason=WHY)
            refs.append(full.reference)
            none = open_case(s, wf, cipher(), staff, T0, case_data(est))
            advance_case(s, wf, staff, none, "record_consent_and_risk", {"consent": "none", "risk": "high"}, T0)
            advance_case(s, wf, lead, none, "refer", {"recipients": ["head_of_establishment"],
                                                      "override_ground": "risk_to_life",
                                                      "override_reason": OVERRIDE_REASON}, T0)
            refs.append(none.reference)
            s.commit()
            return refs
    finally:
        engine.dispose()


def _dump(url: str) -> str:
    """Every row of the tables that hold what people typed, as text."""
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            out = []
            for table in ("wf_history", "cases", "case_contacts", "case_notes", "detainees", "wf_instances"):
                out += [repr(tuple(r)) for r in conn.execute(sa.text(f"SELECT * FROM {table}"))]
            return "\n".join(out)
    finally:
        engine.dispose()


def _v1_heads(url: str) -> dict[int, str]:
    """Recompute every chain in format 1 from the raw rows (the downgraded schema has no hash_version),
    checking each link; returns each instance's head."""
    engine = create_db_engine(url)
    heads: dict[int, str] = {}
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT instance_id, seq, kind, \"trigger\", from_stage, to_stage, actor_id, "
                                        "at, data, corrects_seq, prev_hash, hash FROM wf_history "
                                        "ORDER BY instance_id, seq")).all()
            for r in rows:
                prev = heads.get(r.instance_id, genesis_hash(r.instance_id))
                at = r.at if isinstance(r.at, datetime) else datetime.fromisoformat(r.at)
                at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
                payload = {"instance": r.instance_id, "seq": r.seq, "kind": r.kind, "trigger": r.trigger,
                           "from": r.from_stage, "to": r.to_stage, "actor": r.actor_id,
                           "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
                           "data": r.data if isinstance(r.data, dict) else json.loads(r.data),
                           "corrects": r.corrects_seq, "prev": prev}
                text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
                assert r.prev_hash == prev and r.hash == hashlib.sha256(text.encode()).hexdigest(), (r.instance_id,
                                                                                                     r.seq)
                heads[r.instance_id] = r.hash
            recorded = dict(conn.execute(sa.text("SELECT id, head_hash FROM wf_instances")).all())
            assert recorded == heads
    finally:
        engine.dispose()
    return heads


def _readable(session: Session, refs: list[str]) -> None:
    wf = build_engine(cipher=cipher())
    full, none = (session.scalars(sa.select(Case).where(Case.reference == r)).one() for r in refs)
    lead = session.scalars(sa.select(User).where(User.role == Role.LEAD)).one()
    assert read_description(cipher(), full) == CANARY_DESCRIPTION
    assert read_override_reason(cipher(), none) == f"risk_to_life: {OVERRIDE_REASON}"
    texts: list[Any] = []
    for case in (full, none):
        for e in session.scalars(sa.select(HistoryEvent).where(HistoryEvent.instance_id == case.instance_id)):
            data = event_data(cipher(), session, e.instance_id, e.seq, e.data)
            texts += [*data.get("fields", {}).values(), data.get("reason")]
    assert {SUMMARY, TYPED, WHY, OVERRIDE_REASON} <= {t for t in texts if isinstance(t, str)}
    (note,) = session.scalars(sa.select(CaseNote))
    assert read_note(cipher(), note) == NOTE
    assert view_identity(session, wf, cipher(), lead, full, "checking after the migration", T0 + timedelta(days=30)
                         ).name == CANARY_NAME
    session.rollback()


@pytest.mark.timeout(120)
def test_down_and_up_with_cases_keeps_everything_readable_and_verifiable(empty_db: EmptyDatabase) -> None:
    migrations.upgrade(empty_db.url)
    refs = _populate(empty_db.url)
    sealed_dump = _dump(empty_db.url)
    assert not [c for c in CANARIES if c in sealed_dump]  # nothing typed is in the clear at head

    migrations.downgrade(empty_db.url, "0016", [TEST_KEY])
    plain = _dump(empty_db.url)
    assert SEALED not in plain and all(c in plain for c in ("CANARYREASON55", "CANARYSUMMARY99", "CANARYRECIPIENT11",
                                                            "CANARYOVERRIDE33"))
    v1 = _v1_heads(empty_db.url)

    with pytest.raises(RuntimeError, match="needs the encryption keys"):
        migrations.upgrade(empty_db.url)
    assert migrations.current(empty_db.url) == "0016" and _dump(empty_db.url) == plain  # nothing changed

    migrations.upgrade(empty_db.url, "head", [TEST_KEY])
    assert not [c for c in CANARIES if c in _dump(empty_db.url)]
    engine = create_db_engine(empty_db.url)
    try:
        with sessionmaker(engine)() as s:
            report = verify(s)
            assert report.ok, report.findings
            rebuilt = {r.instance_id: r for r in s.scalars(sa.select(ChainRebuild))}
            assert set(rebuilt) == set(v1) | {None}
            for instance in s.scalars(sa.select(WorkflowInstance)):
                assert (rebuilt[instance.id].old_head_hash, rebuilt[instance.id].new_head_hash) == (
                    v1[instance.id], instance.head_hash)
                assert {e.hash_version for e in s.scalars(sa.select(HistoryEvent).where(
                    HistoryEvent.instance_id == instance.id))} == {2}
            assert rebuilt[None].old_head_hash != LEDGER_GENESIS
            assert len(list(s.scalars(sa.select(CaseKey)))) == 2
            _readable(s, refs)
    finally:
        engine.dispose()
