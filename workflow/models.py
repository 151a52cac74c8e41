"""Tables owned by the engine: instances, their hash-chained history, and the instance ledger.

The domain shares this MetaData (one Alembic history for all tables) but never writes these
tables except through :mod:`workflow.engine`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

HASH_LENGTH = 64


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every database (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = metadata
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class WorkflowInstance(Base):
    """One run of a workflow spec. ``stage`` is written only by the engine."""

    __tablename__ = "wf_instances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    spec_key: Mapped[str] = mapped_column(String(64))
    spec_version: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(64), index=True)  # lists filtered by stage
    variables: Mapped[dict[str, Any]] = mapped_column(default=dict)
    calendar: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime]
    stage_entered_at: Mapped[datetime]  # when the current stage was entered (as it happened)
    updated_at: Mapped[datetime]
    # When the instance began (a concern's receipt) and when its latest protocol action happened: no
    # action may be dated before either (decision 17). Null only on rows written before revision 0011.
    began_at: Mapped[datetime | None] = mapped_column(default=None)
    acted_at: Mapped[datetime | None] = mapped_column(default=None)
    # The chain head: the last event's sequence number and hash, so a truncated tail shows.
    head_seq: Mapped[int] = mapped_column(Integer, default=0)
    head_hash: Mapped[str] = mapped_column(String(HASH_LENGTH), default="")
    version: Mapped[int] = mapped_column(Integer, nullable=False)

    __mapper_args__ = {"version_id_col": version}

    def __repr__(self) -> str:
        return f"<WorkflowInstance {self.id} {self.spec_key}@{self.spec_version} {self.stage}>"


class HistoryEvent(Base):
    """An append-only, hash-chained event of one instance. Database triggers refuse UPDATE/DELETE."""

    __tablename__ = "wf_history"
    __table_args__ = (UniqueConstraint("instance_id", "seq", name="uq_wf_history_instance_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("wf_instances.id", ondelete="RESTRICT"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(40))
    trigger: Mapped[str | None] = mapped_column(String(64))
    from_stage: Mapped[str | None] = mapped_column(String(64))
    to_stage: Mapped[str | None] = mapped_column(String(64))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime]
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    corrects_seq: Mapped[int | None] = mapped_column(Integer)
    prev_hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    # How ``hash`` was computed (workflow.history.event_hash): 1, the first format; 2, the current one.
    hash_version: Mapped[int] = mapped_column(Integer, default=2, server_default="2")

    def __repr__(self) -> str:
        return f"<HistoryEvent {self.instance_id}#{self.seq} {self.kind} {self.trigger or ''}>"

    @property
    def plain_data(self) -> dict[str, Any]:
        """The data as the engine was given it, before the host's sealer encrypted sensitive values: only on
        the event object the engine just wrote (for the host's bookkeeping in the same transaction); an
        event read from the database gives its stored data."""
        plain = self.__dict__.get("_plain_data")
        return plain if isinstance(plain, dict) else self.data


class LedgerEntry(Base):
    """A global chain over instance births, so that deleting a whole instance's history shows."""

    __tablename__ = "wf_ledger"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    instance_id: Mapped[int] = mapped_column(Integer, unique=True)
    genesis_hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    prev_hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    hash_version: Mapped[int] = mapped_column(Integer, default=2, server_default="2")


class ChainRebuild(Base):
    """A chain rewritten into another hash format (a migration that had to change what history holds): its
    head before and after, so that a head noted down before can be followed to the one after. The ledger's
    rebuild has no instance."""

    __tablename__ = "wf_chain_rebuilds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[int | None] = mapped_column(Integer)
    old_head_seq: Mapped[int] = mapped_column(Integer)
    old_head_hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    new_head_hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    from_version: Mapped[int] = mapped_column(Integer)
    to_version: Mapped[int] = mapped_column(Integer)
    revision: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]


class ChainHead(Base):
    """The ledger's head. Appends lock this row, so concurrent births never fork the ledger."""

    __tablename__ = "wf_chain_heads"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(HASH_LENGTH))


APPEND_ONLY_TABLES = ("wf_history", "wf_ledger")

# A deadline's status (``DeadlineRow.status``): running (open, paused, overdue) or done.
OPEN, PAUSED, OVERDUE, DONE = "open", "paused", "overdue", "done"
LIVE = (OPEN, PAUSED, OVERDUE)
# A timer's status and kind (``TimerRow``): ``failed`` after too many attempts (``workflow.sweep``).
PENDING, FIRED, CANCELLED, FAILED = "pending", "fired", "cancelled", "failed"
REMINDER, DUE = "reminder", "due"


class DeadlineRow(Base):
    """A deadline of one stage entry. Created with the stage change, closed when the stage is left.

    status: ``open`` (running), ``paused``, ``overdue`` (its due time passed while in the stage),
    ``done`` (the stage was left; ``overdue_at`` says whether it was missed first).
    """

    __tablename__ = "wf_deadlines"
    __table_args__ = (
        UniqueConstraint("instance_id", "entry_seq", "name", name="uq_wf_deadlines_occurrence"),
        # Covering for the lead queue and its counts, which walk running deadlines in due order.
        Index("ix_wf_deadlines_status_due_at", "status", "due_at", "instance_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("wf_instances.id"), index=True)
    entry_seq: Mapped[int] = mapped_column(Integer)  # the history event that entered the stage
    stage: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    unit: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(Integer)
    reminders: Mapped[list[str]] = mapped_column(JSON, default=list)
    anchor_at: Mapped[datetime]
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="open")
    generation: Mapped[int] = mapped_column(Integer, default=1)
    paused_at: Mapped[datetime | None]
    overdue_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class TimerRow(Base):
    """One moment something must happen: a reminder before a deadline, or the deadline itself.

    The unique key (deadline, kind, ordinal, generation) is one row per occurrence, so two
    schedulers can never create or fire the same effect twice.
    """

    __tablename__ = "wf_timers"
    __table_args__ = (
        UniqueConstraint("deadline_id", "kind", "ordinal", "generation", name="uq_wf_timers_occurrence"),
        Index("ix_wf_timers_status_available_at", "status", "available_at", "id"),
        # Leaving a stage cancels the instance's pending timers: without this it scans all pending ones.
        Index("ix_wf_timers_instance_id_status", "instance_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deadline_id: Mapped[int] = mapped_column(ForeignKey("wf_deadlines.id"), index=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("wf_instances.id"))
    kind: Mapped[str] = mapped_column(String(16))  # reminder | due
    ordinal: Mapped[int] = mapped_column(Integer, default=0)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    fire_at: Mapped[datetime]
    available_at: Mapped[datetime]  # fire_at, or later after a failed attempt
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | fired | cancelled | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    fired_at: Mapped[datetime | None]
    lateness_ms: Mapped[int | None] = mapped_column(BigInteger)  # a catch-up can be months late
    fired_by: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
