"""Hash chains over history, and the verifier that finds every broken link.

Each instance's events form a chain: an event's hash covers its content and its predecessor's
hash; the instance row records the chain head so a removed tail shows. A global ledger chains the
first event of every instance, so deleting a whole instance (history and row) shows too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow.models import ChainHead, HistoryEvent, LedgerEntry, WorkflowInstance

LEDGER = "ledger"


def _digest(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def at_text(at: datetime) -> str:
    """An event's ``at`` as its hash covers it (UTC, microseconds): what an export writes."""
    return _iso(at)


def genesis_hash(instance_id: int) -> str:
    return hashlib.sha256(f"wf-instance:{instance_id}".encode()).hexdigest()


LEDGER_GENESIS = hashlib.sha256(b"wf-ledger:genesis").hexdigest()


HASH_VERSION = 2  # what new events and ledger entries are hashed with (decision 20)


def _digest_v2(items: list[Any]) -> str:
    """Version 2: SHA-256 over the canonical JSON (orjson, keys sorted, UTF-8) of a list whose first item is
    the version — about seven times faster to compute than version 1's ``json.dumps`` of a dict."""
    return hashlib.sha256(orjson.dumps(items, option=orjson.OPT_SORT_KEYS)).hexdigest()


def event_hash(event: HistoryEvent) -> str:
    if (event.hash_version or 1) >= 2:
        return _digest_v2([2, event.instance_id, event.seq, event.kind, event.trigger, event.from_stage,
                           event.to_stage, event.actor_id, _iso(event.at), event.data, event.corrects_seq,
                           event.prev_hash])
    return event_hash_v1(event)


def event_hash_v1(event: HistoryEvent) -> str:
    return _digest({
        "instance": event.instance_id,
        "seq": event.seq,
        "kind": event.kind,
        "trigger": event.trigger,
        "from": event.from_stage,
        "to": event.to_stage,
        "actor": event.actor_id,
        "at": _iso(event.at),
        "data": event.data,
        "corrects": event.corrects_seq,
        "prev": event.prev_hash,
    })


def ledger_hash(entry: LedgerEntry) -> str:
    if (entry.hash_version or 1) >= 2:
        return _digest_v2([2, entry.seq, entry.instance_id, entry.genesis_hash, entry.prev_hash])
    return ledger_hash_v1(entry)


def ledger_hash_v1(entry: LedgerEntry) -> str:
    return _digest({
        "seq": entry.seq,
        "instance": entry.instance_id,
        "genesis": entry.genesis_hash,
        "prev": entry.prev_hash,
    })


@dataclass(frozen=True)
class Finding:
    """One broken link. ``what`` is a stable word for machines; ``message`` is for people."""

    what: str
    message: str
    instance_id: int | None = None
    seq: int | None = None

    def __str__(self) -> str:
        return self.message


@dataclass
class VerificationReport:
    instances: int = 0
    events: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def _events_by_instance(session: Session) -> Iterator[tuple[int, list[HistoryEvent]]]:
    stmt = select(HistoryEvent).order_by(HistoryEvent.instance_id, HistoryEvent.seq, HistoryEvent.id)
    current: int | None = None
    batch: list[HistoryEvent] = []
    for ev in session.scalars(stmt.execution_options(yield_per=2000)):
        if current is not None and ev.instance_id != current:
            yield current, batch
            batch = []
        current = ev.instance_id
        batch.append(ev)
    if current is not None:
        yield current, batch


def _check_chain(instance_id: int, events: list[HistoryEvent], inst: WorkflowInstance | None,
                 f: list[Finding]) -> str | None:
    """Check one instance's events (in seq order) against their hashes, each other and the instance row;
    append what is wrong to ``f``. Returns the first event's hash (None if it has no first event)."""
    prev = genesis_hash(instance_id)
    expected_seq = 1
    stage: str | None = None
    first: str | None = None
    for ev in events:
        if ev.seq != expected_seq:
            if ev.seq > expected_seq:
                f.append(Finding("missing", f"instance {instance_id}: events {expected_seq}..{ev.seq - 1} "
                                 "are missing (deleted)", instance_id, expected_seq))
            else:
                f.append(Finding("duplicate", f"instance {instance_id}: event {ev.seq} appears again "
                                 "(inserted or reordered)", instance_id, ev.seq))
        if event_hash(ev) != ev.hash:
            f.append(Finding("edited", f"instance {instance_id}: event {ev.seq} (id {ev.id}) does not match "
                             "its hash (edited)", instance_id, ev.seq))
        if ev.prev_hash != prev:
            f.append(Finding("broken-link", f"instance {instance_id}: event {ev.seq} (id {ev.id}) does not "
                             "follow its predecessor (inserted, deleted or reordered)", instance_id, ev.seq))
        if ev.seq == 1:
            first = ev.hash
        prev = ev.hash
        expected_seq = max(expected_seq, ev.seq) + 1
        stage = ev.to_stage if ev.to_stage is not None else stage
    if inst is None:
        f.append(Finding("orphan", f"instance {instance_id}: history exists but the instance row is gone",
                         instance_id))
    elif not events:
        f.append(Finding("history-deleted", f"instance {instance_id}: its whole history is missing "
                         f"(the instance records {inst.head_seq} events)", instance_id))
    elif (inst.head_seq, inst.head_hash) != (events[-1].seq, events[-1].hash):
        f.append(Finding("head-mismatch", f"instance {instance_id}: the chain ends at event {events[-1].seq} "
                         f"but the instance records head {inst.head_seq} (events removed or added at the end)",
                         instance_id))
    # The stage column is not hashed, and wf_instances is not append-only: check it against
    # the stage the history last moved to, so a stage set behind the engine's back shows.
    if inst is not None and stage is not None and inst.stage != stage:
        f.append(Finding("stage-mismatch", f"instance {instance_id}: is at stage '{inst.stage}' but its history "
                         f"ends at stage '{stage}' (changed outside the engine)", instance_id))
    return first


def verify_instance(session: Session, instance_id: int) -> VerificationReport:
    """Check one instance: its chain, its head, and its entry in the ledger (that entry's own hash and
    the first event it recorded). Not the rest of the ledger's chain: ``verify`` checks everything."""
    report = VerificationReport(instances=1)
    f = report.findings
    # The instance first, fresh (not what the session loaded earlier), and on PostgreSQL share-locked: an
    # append moves its head under a row lock, so none can commit between this read and the events' read —
    # a move made meanwhile by someone else must not look like tampering. SQLite's BEGIN IMMEDIATE
    # already keeps writers out of this transaction.
    inst = session.scalars(select(WorkflowInstance).where(WorkflowInstance.id == instance_id)
                           .with_for_update(read=True).execution_options(populate_existing=True)).one_or_none()
    events = list(session.scalars(select(HistoryEvent).where(HistoryEvent.instance_id == instance_id)
                                  .order_by(HistoryEvent.seq, HistoryEvent.id)))
    report.events = len(events)
    first = None
    if inst is None and not events:
        f.append(Finding("instance-deleted", f"instance {instance_id}: its row and history are gone", instance_id))
    else:
        first = _check_chain(instance_id, events, inst, f)
    entry = session.scalars(select(LedgerEntry).where(LedgerEntry.instance_id == instance_id)).one_or_none()
    if entry is None:
        f.append(Finding("not-in-ledger", f"instance {instance_id}: not recorded in the ledger (inserted "
                         "behind the engine's back, or its ledger entry was deleted)", instance_id))
        return report
    if ledger_hash(entry) != entry.hash:
        f.append(Finding("ledger-edited", f"ledger: entry {entry.seq} does not match its hash (edited)",
                         instance_id, entry.seq))
    if first is not None and first != entry.genesis_hash:
        f.append(Finding("genesis-mismatch", f"instance {instance_id}: its first event is not the one "
                         "the ledger recorded", instance_id, 1))
    return report


Progress = Callable[[int, int], None]  # (instances checked so far, instances in all)


def verify(session: Session, progress: Progress | None = None) -> VerificationReport:
    """Check every chain and the ledger. Reads only; reports every problem it finds. ``progress`` is told
    how many instances' chains have been checked, of how many, as it goes."""
    report = VerificationReport()
    f = report.findings
    instances = {i.id: i for i in session.scalars(select(WorkflowInstance))}
    report.instances = len(instances)
    first_hash: dict[int, str] = {}
    seen: set[int] = set()
    for instance_id, events in _events_by_instance(session):
        seen.add(instance_id)
        if progress is not None:
            progress(len(seen), len(instances))
        report.events += len(events)
        first = _check_chain(instance_id, events, instances.get(instance_id), f)
        if first is not None:
            first_hash[instance_id] = first
    for instance_id, inst in instances.items():
        if instance_id not in seen:
            f.append(Finding("history-deleted", f"instance {instance_id}: its whole history is missing "
                             f"(the instance records {inst.head_seq} events)", instance_id))

    prev = LEDGER_GENESIS
    expected = 1
    ledgered: set[int] = set()
    last_seq, last_hash = 0, LEDGER_GENESIS
    for entry in session.scalars(select(LedgerEntry).order_by(LedgerEntry.seq)):
        if entry.seq != expected:
            f.append(Finding("ledger-gap", f"ledger: entries {expected}..{entry.seq - 1} are missing (deleted)",
                             None, expected))
        if ledger_hash(entry) != entry.hash:
            f.append(Finding("ledger-edited", f"ledger: entry {entry.seq} does not match its hash (edited)",
                             entry.instance_id, entry.seq))
        if entry.prev_hash != prev:
            f.append(Finding("ledger-broken-link", f"ledger: entry {entry.seq} does not follow its predecessor",
                             entry.instance_id, entry.seq))
        ledgered.add(entry.instance_id)
        if entry.instance_id not in instances and entry.instance_id not in seen:
            f.append(Finding("instance-deleted", f"instance {entry.instance_id}: born in the ledger (entry "
                             f"{entry.seq}) but its row and history are gone", entry.instance_id))
        elif entry.instance_id in first_hash and first_hash[entry.instance_id] != entry.genesis_hash:
            f.append(Finding("genesis-mismatch", f"instance {entry.instance_id}: its first event is not the one "
                             "the ledger recorded", entry.instance_id, 1))
        prev = entry.hash
        expected = entry.seq + 1
        last_seq, last_hash = entry.seq, entry.hash
    for instance_id in sorted(set(instances) | seen):
        if instance_id not in ledgered:
            f.append(Finding("not-in-ledger", f"instance {instance_id}: not recorded in the ledger (inserted "
                             "behind the engine's back, or its ledger entry was deleted)", instance_id))
    head = session.get(ChainHead, LEDGER)
    head_seq, head_hash = (head.seq, head.hash) if head else (0, LEDGER_GENESIS)
    if (head_seq, head_hash) != (last_seq, last_hash):
        f.append(Finding("ledger-head-mismatch", f"ledger: the head records entry {head_seq} but the ledger ends "
                         f"at {last_seq} (entries removed or added at the end)"))
    return report
