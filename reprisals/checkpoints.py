"""Checkpoints of the database's heads, signed outside it, and the check of a database against one.

A chain alone cannot show a tail deleted with its head moved back, a ledger rewritten from scratch, a case
removed with its ledger entry, or a history cut back to before some moment: a superuser can make all of them
consistent again. A checkpoint (``reprisals.proof``) fixes, at one moment, the ledger's head, every chain's
head and the access log's last sealed day, under a signature whose private key never enters the database.
What was true then must still be true: every head it names is still in its chain (later events may follow),
the ledger still holds its entry, the sealed day keeps its head.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reprisals import proof
from reprisals.access_log import AccessDay
from workflow.clock import ensure_utc
from workflow.history import LEDGER, LEDGER_GENESIS
from workflow.models import ChainHead, HistoryEvent, LedgerEntry, WorkflowInstance


def heads(session: Session, now: datetime) -> dict[str, Any]:
    """The unsigned content of a checkpoint of the database as it is now (reads only)."""
    ledger = session.get(ChainHead, LEDGER)
    chains = [[i, s, h] for i, s, h in session.execute(
        select(WorkflowInstance.id, WorkflowInstance.head_seq, WorkflowInstance.head_hash)
        .where(WorkflowInstance.head_seq > 0).order_by(WorkflowInstance.id))]
    day = session.scalars(select(AccessDay).order_by(AccessDay.day.desc()).limit(1)).first()
    days = int(session.scalar(select(func.count()).select_from(AccessDay)) or 0)
    return {
        "format": proof.FORMAT, "made_at": ensure_utc(now).astimezone(UTC).isoformat(timespec="seconds"),
        "ledger": {"seq": ledger.seq if ledger else 0, "hash": ledger.hash if ledger else LEDGER_GENESIS},
        "chains": {"count": len(chains), "merkle_root": proof.merkle_root(chains), "heads": chains},
        "access_log": {"days": days, "last_day": day.day.isoformat() if day else None,
                       "head": day.head if day else None},
    }


def write(session: Session, key_file: Path, out: Path, now: datetime) -> dict[str, Any]:
    """Sign a checkpoint of the database now and write it to ``out`` (a file, or a folder to put it in)."""
    document = proof.sign(heads(session, now), proof.load_private_key(key_file))
    if out.is_dir() or not out.suffix:
        out.mkdir(parents=True, exist_ok=True)
        out = out / f"checkpoint-{ensure_utc(now).astimezone(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_bytes(proof.canonical(document) + b"\n")
    document["_path"] = str(out)
    return document


def written_today(folder: Path, now: datetime) -> bool:
    day = ensure_utc(now).astimezone(UTC)
    return any(folder.glob(f"checkpoint-{day:%Y%m%d}T*.json")) if folder.is_dir() else False


def compare(session: Session, document: dict[str, Any]) -> list[str]:
    """What the database no longer holds of what a (checked) checkpoint fixed, in words."""
    problems: list[str] = []
    made = document.get("made_at", "the checkpoint")
    heads_ = (document.get("chains") or {}).get("heads") or []
    stored = {(i, s): h for i, s, h in session.execute(
        select(HistoryEvent.instance_id, HistoryEvent.seq, HistoryEvent.hash)
        .where(HistoryEvent.instance_id.in_([int(x[0]) for x in heads_]) if heads_ else HistoryEvent.id < 0))}
    instances = {i: s for i, s in session.execute(select(WorkflowInstance.id, WorkflowInstance.head_seq))}
    for instance_id, seq, head in heads_:
        instance_id, seq = int(instance_id), int(seq)
        found = stored.get((instance_id, seq))
        if found == head:
            continue
        if instance_id not in instances and not any(k[0] == instance_id for k in stored):
            problems.append(f"instance {instance_id}: the case existed at {made} (with {seq} events) and is gone")
        elif found is None:
            problems.append(f"instance {instance_id}: its history is shorter than at {made} (event {seq} is gone: "
                            "cut back to before the checkpoint)")
        else:
            problems.append(f"instance {instance_id}: event {seq} is not the one of {made} (the history was "
                            "rewritten and its hashes recomputed)")
    ledger = document.get("ledger") or {}
    if int(ledger.get("seq") or 0):
        entry = session.get(LedgerEntry, int(ledger["seq"]))
        if entry is None or entry.hash != ledger.get("hash"):
            problems.append(f"ledger: entry {ledger['seq']} is not the one of {made} (the ledger was rewritten "
                            "or cut back)")
    access = document.get("access_log") or {}
    if access.get("last_day"):
        day = session.get(AccessDay, datetime.fromisoformat(str(access["last_day"])).date())
        if day is None or day.head != access.get("head"):
            problems.append(f"access log: the day {access['last_day']} is not as sealed at {made} (its seal or "
                            "its entries were rewritten)")
    return problems


def latest(folder: Path | None, instance_id: int) -> dict[str, Any] | None:
    """The newest checkpoint in ``folder`` that names the instance (read as it is: the reader checks it)."""
    if folder is None or not folder.is_dir():
        return None
    for path in sorted(folder.glob("checkpoint-*.json"), reverse=True):
        try:
            document = proof.read(path)
        except proof.ProofError:
            continue
        if any(int(h[0]) == instance_id for h in (document.get("chains") or {}).get("heads") or []):
            return document
    return None


def export_case(session: Session, instance_id: int, reference: str, folder: Path | None) -> dict[str, Any]:
    """A case's history as stored — sensitive values stay sealed — with its chain, and the newest checkpoint
    that names it, for ``reprisals.proof.verify_export`` away from the server."""
    from workflow.history import at_text

    events = [{"instance": e.instance_id, "seq": e.seq, "kind": e.kind, "trigger": e.trigger, "from": e.from_stage,
               "to": e.to_stage, "actor": e.actor_id, "at": at_text(e.at), "data": e.data,
               "corrects": e.corrects_seq, "prev": e.prev_hash, "hash": e.hash, "hash_version": e.hash_version}
              for e in session.scalars(select(HistoryEvent).where(HistoryEvent.instance_id == instance_id)
                                       .order_by(HistoryEvent.seq))]
    return {"format": proof.EXPORT_FORMAT, "reference": reference, "instance": instance_id, "events": events,
            "checkpoint": latest(folder, instance_id)}
