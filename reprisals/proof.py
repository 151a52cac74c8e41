"""Signed checkpoints: what they say and how a signature is checked — standard library and `cryptography`
only, so that an auditor can check one away from the server (no database, no configuration, no keys but the
public one).

A checkpoint is a JSON document::

    {"format": "reprisals-checkpoint/1", "made_at": "...", "ledger": {"seq": 41, "hash": "..."},
     "chains": {"count": 12, "merkle_root": "...", "heads": [[instance, seq, hash], ...]},
     "access_log": {"days": 3, "last_day": "2026-12-05", "head": "..."},
     "signature": {"alg": "Ed25519", "public_key_sha256": "...", "value": "<base64>"}}

The signature covers the canonical JSON (keys sorted, no spaces, UTF-8) of everything but ``signature``. The
chain heads are listed, and bound by their Merkle root (SHA-256, leaves ``instance:seq:hash`` in instance
order, an odd node paired with itself), so a checkpoint can be checked whole, or one case's head with the
root alone.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

FORMAT = "reprisals-checkpoint/1"
PRIVATE_NAME, PUBLIC_NAME = "audit-signing.key", "audit-signing.pub"


class ProofError(Exception):
    """A checkpoint or key that cannot be used, in words."""


def canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _leaf(instance_id: int, seq: int, head: str) -> bytes:
    return hashlib.sha256(f"{instance_id}:{seq}:{head}".encode()).digest()


def merkle_root(heads: Sequence[Sequence[Any]]) -> str:
    """The Merkle root over chain heads ``[instance, seq, hash]`` (in instance order)."""
    level = [_leaf(int(i), int(s), str(h)) for i, s, h in sorted(heads, key=lambda x: int(x[0]))]
    if not level:
        return hashlib.sha256(b"reprisals-checkpoint:no-chains").hexdigest()
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [hashlib.sha256(level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)]
    return level[0].hex()


# -- keys -------------------------------------------------------------------------------------------------


def generate_signing_keys(folder: Path) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair: the private key readable by its owner only, the public key to publish."""
    folder.mkdir(parents=True, exist_ok=True)
    private, public = folder / PRIVATE_NAME, folder / PUBLIC_NAME
    if private.exists() or public.exists():
        raise ProofError(f"{folder} already holds a signing key: keep it, or choose another folder")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    import os

    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ProofError(f"{path}: not a readable signing key ({type(exc).__name__})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ProofError(f"{path}: not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError, TypeError):
        raise ProofError(f"{path}: not a readable public key (a PEM file made by "
                         "`reprisals keys generate --signing`)") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ProofError(f"{path}: not an Ed25519 public key")
    return key


def _fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


# -- signing and checking -------------------------------------------------------------------------------


def sign(document: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    body = {k: v for k, v in document.items() if k != "signature"}
    body["format"] = FORMAT
    return {**body, "signature": {"alg": "Ed25519", "public_key_sha256": _fingerprint(key.public_key()),
                                  "value": base64.b64encode(key.sign(canonical(body))).decode("ascii")}}


def check(document: dict[str, Any], key: Ed25519PublicKey) -> list[str]:
    """What is wrong with a checkpoint: its format, its signature under ``key``, its heads against their root.
    Empty when it is sound."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        return ["the file is not a reprisals checkpoint (format reprisals-checkpoint/1)"]
    signature = document.get("signature")
    if not isinstance(signature, dict) or signature.get("alg") != "Ed25519":
        return ["the checkpoint is not signed"]
    if signature.get("public_key_sha256") != _fingerprint(key):
        return ["the checkpoint was signed with another key than the public key given"]
    body = {k: v for k, v in document.items() if k != "signature"}
    try:
        key.verify(base64.b64decode(str(signature.get("value")), validate=True), canonical(body))
    except (InvalidSignature, ValueError):
        return ["the checkpoint's signature does not match its content (the file was changed)"]
    chains = body.get("chains") or {}
    if merkle_root(chains.get("heads") or []) != chains.get("merkle_root"):
        return ["the checkpoint's chain heads do not match their signed root"]
    return []


def read(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProofError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(document, dict):
        raise ProofError(f"{path}: not a checkpoint")
    return document


# -- a case's export, checked offline ---------------------------------------------------------------------

EXPORT_FORMAT = "reprisals-case-export/1"


def genesis_hash(instance_id: int) -> str:
    return hashlib.sha256(f"wf-instance:{instance_id}".encode()).hexdigest()


def event_hash(event: dict[str, Any]) -> str:
    """An exported event's hash, recomputed as ``workflow.history.event_hash`` makes it (format 2 is the
    canonical JSON of a list; the standard library's JSON gives the same bytes as orjson for these values)."""
    if int(event.get("hash_version") or 1) >= 2:
        items = [2, event["instance"], event["seq"], event["kind"], event["trigger"], event["from"], event["to"],
                 event["actor"], event["at"], event["data"], event["corrects"], event["prev"]]
        text = json.dumps(items, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    else:
        payload = {k: event[k] for k in ("instance", "seq", "kind", "trigger", "from", "to", "actor", "at", "data",
                                         "corrects", "prev")}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def verify_export(document: dict[str, Any], key: Ed25519PublicKey | None) -> tuple[list[str], list[str]]:
    """Check a case's export on its own: every event against its hash and its predecessor, and — when it
    carries a checkpoint and ``key`` is given — the checkpoint's signature and that the case's head there is
    one of these events. Returns (problems, notes); no problem means the history is as the server signed it."""
    problems: list[str] = []
    notes: list[str] = []
    if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT:
        return ["the file is not a case export (format reprisals-case-export/1)"], notes
    instance_id = document.get("instance")
    events = document.get("events")
    if not isinstance(instance_id, int) or not isinstance(events, list) or not events:
        return ["the export holds no history"], notes
    prev = genesis_hash(instance_id)
    by_seq: dict[int, str] = {}
    for expected, event in enumerate(events, 1):
        try:
            seq, stored = int(event["seq"]), str(event["hash"])
            if event["instance"] != instance_id or seq != expected:
                problems.append(f"event {expected}: missing or out of order (found event {seq})")
            if event["prev"] != prev:
                problems.append(f"event {seq}: does not follow event {seq - 1} (an event removed or inserted)")
            if event_hash(event) != stored:
                problems.append(f"event {seq} ({event.get('kind')} {event.get('trigger') or ''}".rstrip()
                                + "): does not match its hash (changed)")
        except (KeyError, TypeError, ValueError):
            problems.append(f"event {expected}: not a history event of an export")
            continue
        by_seq[seq] = stored
        prev = stored
    checkpoint = document.get("checkpoint")
    if checkpoint is None:
        notes.append("the export carries no checkpoint: its history is consistent, but nothing signed anchors it")
    elif key is None:
        notes.append("no public key given: the checkpoint's signature was not checked")
    else:
        problems += check(checkpoint, key)
        heads = {int(i): (int(s), h) for i, s, h in (checkpoint.get("chains") or {}).get("heads") or []}
        if instance_id not in heads:
            problems.append(f"the checkpoint of {checkpoint.get('made_at')} does not name this case")
        else:
            seq, head = heads[instance_id]
            if by_seq.get(seq) != head:
                problems.append(f"event {seq}: is not the head the checkpoint of {checkpoint.get('made_at')} "
                                "signed (the history was rewritten or cut back since)")
            else:
                notes.append(f"events 1..{seq} are as signed at {checkpoint.get('made_at')}")
    return problems, notes
