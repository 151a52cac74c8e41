"""Each case's own data key (envelope encryption), and the sealing of sensitive text with it.

A case's data key is a random Fernet key, stored only wrapped by the configured keys
(``REPRISALS_ENCRYPTION_KEYS``, a :class:`~reprisals.crypto.Cipher`) in ``case_keys``. Rotating the
configured keys re-wraps the case keys (:func:`rewrap_keys`); nothing sealed under a case key changes.
Destroying a case's key (retention) leaves every ciphertext unreadable and every history chain verifiable,
since history's hash covers the ciphertext.

Sealed with the case's key: the person's identity and the description (their columns), notes, the override
reason on the case, hand-typed recipients of letters, and in the history every sensitive field of an action
(``FieldSpec.is_sensitive``: text and hand-typed strings unless the protocol says ``sensitive: false``) and
every reason a person typed (identity views, assignments, corrections, deadline extensions and pauses). In
JSON (history data, letters' recipients) a sealed value is ``{"$sealed": "<token>"}``; in a text column it is
the token. The scope sealed inside each token (``wf:<instance>:<seq>:fields.summary``) ties it to its place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from reprisals.crypto import Cipher, generate_key
from reprisals.errors import IdentityUnreadable
from workflow.clock import ensure_utc
from workflow.models import Base, WorkflowInstance

SEALED = "$sealed"
ERASED = "(erased: this case's key was destroyed)"
_CACHE = "reprisals.case_keys"

# The reasons people type into host events, by event kind: sealed in history like an action's free text.
HOST_SEALED: dict[str, tuple[str, ...]] = {
    "identity_viewed": ("reason",),
    "assigned": ("reason",),
    "action_redated": ("reason",),
    "deadline_extended": ("reason",),
    "deadline_paused": ("reason",),
    "deadline_resumed": ("reason",),
    "identity_corrected": ("reason",),
    "unmask_requested": ("reason",),
    "unmask_approved": ("reason",),
    "unmask_refused": ("reason",),
}


class CaseKey(Base):
    """A case's data key, wrapped by the configured keys; ``wrapped`` is None once destroyed."""

    __tablename__ = "case_keys"

    instance_id: Mapped[int] = mapped_column(ForeignKey("wf_instances.id"), primary_key=True, autoincrement=False)
    wrapped: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    destroyed_at: Mapped[datetime | None]


class KeyDestroyed(IdentityUnreadable):
    """The case's key is gone (retention): what was sealed with it cannot be read by anyone."""


def is_sealed(value: object) -> bool:
    return isinstance(value, dict) and isinstance(value.get(SEALED), str) and len(value) == 1


class Keyring:
    """Case keys: made, unwrapped (once per database session) and used to seal and reveal. It is also the
    workflow engine's :class:`~workflow.engine.Sealer`."""

    def __init__(self, master: Cipher) -> None:
        self.master = master

    # -- keys ----------------------------------------------------------------------------------------

    def _cache(self, session: Session) -> dict[int, Cipher]:
        """Unwrapped keys, for the database session's life, per configured cipher."""
        by_master: dict[Cipher, dict[int, Cipher]] = session.info.setdefault(_CACHE, {})
        return by_master.setdefault(self.master, {})

    def create(self, session: Session, instance_id: int, now: datetime) -> Cipher:
        """A new key for the case's instance (at its opening); the caller's transaction stores it."""
        key = generate_key()
        session.add(CaseKey(instance_id=instance_id, wrapped=self.master.encrypt(_wrap_scope(instance_id), key),
                            created_at=ensure_utc(now)))
        cipher = Cipher([key])
        self._cache(session)[instance_id] = cipher
        return cipher

    def for_instance(self, session: Session, instance_id: int, *, create_at: datetime | None = None) -> Cipher:
        cache = self._cache(session)
        if instance_id in cache:
            return cache[instance_id]
        row = session.get(CaseKey, instance_id)
        if row is None:
            if create_at is None:
                raise IdentityUnreadable(f"case key {instance_id}: there is none")
            return self.create(session, instance_id, create_at)
        if row.wrapped is None:
            raise KeyDestroyed(f"case key {instance_id}: destroyed")
        cipher = Cipher([self.master.decrypt(_wrap_scope(instance_id), row.wrapped)])
        cache[instance_id] = cipher
        return cipher

    # -- sealing -------------------------------------------------------------------------------------

    def seal(self, session: Session, instance: WorkflowInstance, scope: str, value: str) -> dict[str, str]:
        """The engine's hook: history's sensitive values, as ``{"$sealed": token}``."""
        cipher = self.for_instance(session, instance.id, create_at=instance.updated_at or instance.created_at)
        return {SEALED: cipher.encrypt(scope, value)}

    def encrypt(self, session: Session, instance_id: int, scope: str, value: str) -> str:
        return self.for_instance(session, instance_id).encrypt(scope, value)

    def decrypt(self, session: Session, instance_id: int, scope: str, token: str) -> str:
        cipher = self.for_instance(session, instance_id)
        try:
            return cipher.decrypt(scope, token)
        except IdentityUnreadable as exc:
            if "another record" in str(exc):
                raise
            # Raised outside the except block's context: nothing of the token travels with it.
            problem = f"{scope}: cannot be decrypted with this case's key (it belongs to another record, or is damaged)"
        raise IdentityUnreadable(problem) from None

    def reveal(self, session: Session, instance_id: int, scope: str, value: Any) -> Any:
        """A stored value as text: a sealed one decrypted (``ERASED`` when the key is gone), others as they are."""
        if not is_sealed(value):
            return value
        try:
            return self.decrypt(session, instance_id, scope, value[SEALED])
        except KeyDestroyed:
            return ERASED

    def reveal_stored(self, session: Session, instance_id: int, seq: int,
                      data: Mapping[str, Any] | None) -> dict[str, Any]:
        """The same for an event read as a plain row (its instance, seq and data)."""
        return reveal_data(data, lambda path, v: self.reveal(session, instance_id, f"wf:{instance_id}:{seq}:{path}", v))


def reveal_data(data: Mapping[str, Any] | None, reveal: Callable[[str, Any], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (data or {}).items():
        if key == "fields" and isinstance(value, Mapping):
            out[key] = {k: reveal(f"fields.{k}", v) if is_sealed(v) else v for k, v in value.items()}
        elif is_sealed(value):
            out[key] = reveal(key, value)
        else:
            out[key] = value
    return out


def _wrap_scope(instance_id: int) -> str:
    return f"case-key:{instance_id}"


def keyring_of(engine: Any) -> Keyring:
    """The engine's keyring (set by ``build_engine(cipher=…)``): a domain engine without one is a bug, not a
    reason to store sensitive text in the clear."""
    sealer = getattr(engine, "sealer", None)
    if not isinstance(sealer, Keyring):
        raise RuntimeError("this workflow engine has no keyring: build it with build_engine(cipher=...)")
    return sealer


def rewrap_keys(session: Session, master: Cipher, progress: Callable[[int, int], None] | None = None) -> int:
    """Re-wrap every case key not wrapped with the primary configured key; returns how many changed."""
    rows = list(session.scalars(select(CaseKey).where(CaseKey.wrapped.is_not(None)).order_by(CaseKey.instance_id)))
    changed = 0
    for i, row in enumerate(rows, 1):
        assert row.wrapped is not None
        if master.needs_rotation(row.wrapped):
            row.wrapped = master.rotate(row.wrapped)
            changed += 1
        if progress is not None:
            progress(i, len(rows))
    return changed


def destroy_key(session: Session, instance_id: int, now: datetime) -> None:
    """Forget a case's key (retention): its sealed content is gone for good; its history still verifies."""
    row = session.get(CaseKey, instance_id)
    if row is not None:
        row.wrapped, row.destroyed_at = None, ensure_utc(now)
    for cache in session.info.get(_CACHE, {}).values():
        cache.pop(instance_id, None)

