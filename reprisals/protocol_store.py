"""Protocol versions uploaded by administrators, and which version new cases start on.

Shipped versions come from files (``reprisals/protocols`` and ``REPRISALS_PROTOCOL_FILES``); uploaded
ones are stored in ``protocol_versions`` with their YAML text, validated exactly as a shipped file is.
Every stored version is registered into a process's engine when the runtime is built (running cases
may be on any of them); new cases of a key start on its *active* stored version, or on the newest
shipped version when none is active. Running cases keep the version they started on.

Limitation: a process registers stored versions when it starts. The process that uploads registers
the new version at once; another process running at the time registers an *activated* version the
first time it opens a case (:func:`active_version`), but it knows a version that was uploaded and
activated after it started only then — until restarted, its running cases on such a version cannot be
shown by it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from reprisals import access_log
from reprisals.errors import InvalidInput, NotAllowed
from reprisals.models import Role, User
from reprisals.protocol import GUARDS, SPEC_KEY, meaning_problems
from workflow.clock import ensure_utc
from workflow.engine import Engine
from workflow.errors import Problem, SpecError
from workflow.models import Base
from workflow.spec import WorkflowSpec, load_spec

log = logging.getLogger(__name__)


class ProtocolVersion(Base):
    __tablename__ = "protocol_versions"
    __table_args__ = (UniqueConstraint("key", "version", name="uq_protocol_versions_key_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    yaml_text: Mapped[str] = mapped_column(Text)
    uploaded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    uploaded_at: Mapped[datetime]
    active: Mapped[bool] = mapped_column(Boolean, default=False)


@dataclass(frozen=True)
class KnownVersion:
    key: str
    version: int
    title: str
    uploaded: bool
    active: bool
    uploaded_at: datetime | None
    activatable: bool  # uploaded, or the newest shipped (activating it clears the choice)


def _source(key: str = "upload") -> str:
    return f"<{key}>"


def validate_protocol(engine: Engine, text: str) -> WorkflowSpec:
    """Parse and check a spec as the product would run it. :class:`SpecError` lists every problem
    with its path; also refused: a version already known with other content."""
    if not text.strip():
        raise SpecError(_source(), [Problem("", "the file is empty")])
    spec = load_spec(text, source=_source())  # refuses files over workflow.spec.MAX_SPEC_BYTES
    Engine(guards=dict(GUARDS), spec_check=meaning_problems).register(spec)  # guard names, what triggers mean
    if spec.version in engine.versions(spec.key):
        raise SpecError(_source(), [Problem("version", f"{spec.key} version {spec.version} already exists; "
                                                       "give the new version a higher number")])
    return spec


def upload_protocol(session: Session, engine: Engine, admin: User, text: str, now: datetime, *,
                    client: str | None = None) -> ProtocolVersion:
    """Store a valid spec (inactive) and register it in ``engine``, with its access-log entry. Nothing
    is stored if invalid."""
    if admin.role is not Role.ADMIN:
        raise NotAllowed("only an administrator can upload a protocol version")
    spec = validate_protocol(engine, text)
    if session.scalars(select(ProtocolVersion.id).where(ProtocolVersion.key == spec.key,
                                                        ProtocolVersion.version == spec.version)).first():
        raise SpecError(_source(), [Problem("version", f"{spec.key} version {spec.version} already exists")])
    row = ProtocolVersion(key=spec.key, version=spec.version, yaml_text=text, uploaded_by_id=admin.id,
                          uploaded_at=ensure_utc(now), active=False)
    session.add(row)
    session.flush()
    access_log.record(session, now, "protocol_uploaded", actor=admin, client=client,
                      detail={"protocol": spec.key, "version": spec.version})
    engine.register(spec)
    return row


def activate_protocol(session: Session, engine: Engine, admin: User, key: str, version: int, now: datetime, *,
                      client: str | None = None) -> None:
    """New cases of ``key`` start on ``version``: an uploaded version, or (clearing the choice) the
    newest shipped one. The access log records it."""
    if admin.role is not Role.ADMIN:
        raise NotAllowed("only an administrator can activate a protocol version")
    rows = list(session.scalars(select(ProtocolVersion).where(ProtocolVersion.key == key).with_for_update()))
    chosen = next((r for r in rows if r.version == version), None)
    if chosen is None and version != _newest_shipped(engine, key, {r.version for r in rows}):
        raise InvalidInput({"version": f"{key} version {version} cannot be activated"})
    session.execute(update(ProtocolVersion).where(ProtocolVersion.key == key).values(active=False))
    if chosen is not None:
        session.execute(update(ProtocolVersion).where(ProtocolVersion.id == chosen.id).values(active=True))
        _ensure_registered(engine, chosen)
    access_log.record(session, now, "protocol_activated", actor=admin, client=client,
                      detail={"protocol": key, "version": version, "shipped": chosen is None})
    session.flush()
    session.expire_all()


def _newest_shipped(engine: Engine, key: str, uploaded: set[int]) -> int | None:
    shipped = [v for v in engine.versions(key) if v not in uploaded]
    return max(shipped) if shipped else None


def _ensure_registered(engine: Engine, row: ProtocolVersion) -> None:
    if row.version not in engine.versions(row.key):
        engine.register(load_spec(row.yaml_text, source=f"protocol_versions/{row.key}@{row.version}"))


def active_version(session: Session, engine: Engine, key: str) -> int | None:
    """The version new cases of ``key`` start on (``None``: the engine's newest, when nothing is stored)."""
    rows = session.execute(select(ProtocolVersion.version, ProtocolVersion.active)
                           .where(ProtocolVersion.key == key)).all()
    if not rows:
        return None
    for version, active in rows:
        if active:
            row = session.scalars(select(ProtocolVersion).where(ProtocolVersion.key == key,
                                                                ProtocolVersion.version == version)).one()
            _ensure_registered(engine, row)  # activated in another process since this one started
            return int(version)
    return _newest_shipped(engine, key, {int(v) for v, _ in rows})


def known_versions(session: Session, engine: Engine, key: str) -> list[KnownVersion]:
    rows = {r.version: r for r in session.scalars(select(ProtocolVersion).where(ProtocolVersion.key == key))}
    active = active_version(session, engine, key)
    newest_shipped = _newest_shipped(engine, key, set(rows))
    out = []
    for version in sorted(set(engine.versions(key)) | set(rows), reverse=True):
        row = rows.get(version)
        title = engine.spec(key, version).title if version in engine.versions(key) else ""
        out.append(KnownVersion(key, version, title or f"{key} version {version}", row is not None,
                                version == active, row.uploaded_at if row else None,
                                version != active and (row is not None or version == newest_shipped)))
    return out


def protocol_keys(session: Session) -> list[str]:
    stored = set(session.scalars(select(ProtocolVersion.key).distinct()))
    return sorted(stored | {SPEC_KEY})


def load_stored_spec(session: Session, key: str, version: int) -> WorkflowSpec | None:
    """The engine's loader: a stored version this process has not registered yet (uploaded by
    another process after this one started), read in the caller's session."""
    row = session.scalars(select(ProtocolVersion).where(ProtocolVersion.key == key,
                                                        ProtocolVersion.version == version)).one_or_none()
    if row is None:
        return None
    return load_spec(row.yaml_text, source=f"protocol_versions/{row.key}@{row.version}")
