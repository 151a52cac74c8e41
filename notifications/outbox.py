"""Enqueue messages inside the caller's transaction; deliver them after commit.

``enqueue`` is idempotent on its key, so a handler that runs twice (a crash between its effect and
its bookkeeping) still produces one message. ``deliver_due`` is a boundary: it claims a message
(``sending``, with a lease) and commits, sends it, and records ``sent`` / retry / ``failed`` in the
commit that claims the next message (the run's last outcome in a commit of its own). A sender that
dies between a send and that commit leaves the lease to expire; the message is then sent once more,
with the same Message-ID. Failures retry with exponential
backoff and full jitter until ``max_attempts``, then end ``failed`` — never silently dropped.
"""

from __future__ import annotations

import json
import logging
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Table, bindparam, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter

from notifications.channels import Channel, PermanentFailure, TemporaryFailure
from notifications.models import FAILED, PENDING, SENDING, SENT, InboxItem, OutboxMessage, metadata
from notifications.templates import TemplateProblem, Templates

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_LEASE = timedelta(minutes=5)


def enqueue(session: Session, key: str, channel: str, recipient: str, template: str,
            context: Mapping[str, Any], now: datetime, *, urgent: bool = False,
            not_before: datetime | None = None) -> bool:
    """Add a message unless one with the same key exists. Returns True if it was added.
    ``not_before`` holds a non-urgent message back (e.g. until working hours)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(OutboxMessage).values(
        idempotency_key=key, channel=channel, recipient=recipient, template=template, context=dict(context),
        urgent=urgent, status=PENDING, attempts=0, created_at=now,
        next_attempt_at=max(now, not_before) if not_before and not urgent else now,
    ).on_conflict_do_nothing(index_elements=[OutboxMessage.idempotency_key]).returning(OutboxMessage.id)
    # RETURNING, not rowcount: an ORM-level INSERT reports rowcount -1 on PostgreSQL, which read as
    # "added" for a duplicate key too.
    return session.execute(stmt).first() is not None


def enqueue_many(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """``enqueue`` for many messages in one statement: each row a full outbox row (idempotency_key,
    channel, recipient, template, context, urgent, status, attempts, created_at, next_attempt_at),
    ``ON CONFLICT DO NOTHING`` on its key. SQLite runs one prepared statement for all rows (sqlite3
    loops in C); PostgreSQL reads the rows from one JSON document (psycopg would otherwise handle
    each row in Python)."""
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql":
        session.connection().execute(_ENQUEUE_MANY_SQLITE, [dict(r) for r in rows])
        return
    payload = [{**r, "created_at": _utc_iso(r["created_at"]), "next_attempt_at": _utc_iso(r["next_attempt_at"])}
               for r in rows]
    session.connection().execute(_ENQUEUE_MANY_JSON, {"rows": json.dumps(payload)})


def _utc_iso(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("naive datetime given for an outbox row")
    return at.astimezone(UTC).isoformat()


_OUTBOX_TABLE = cast(Table, OutboxMessage.__table__)
_ENQUEUE_MANY_SQLITE = sqlite.insert(_OUTBOX_TABLE).on_conflict_do_nothing(
    index_elements=[_OUTBOX_TABLE.c.idempotency_key])
_ENQUEUE_MANY_JSON = text(
    "INSERT INTO outbox (idempotency_key, channel, recipient, template, context, urgent, status, attempts, created_at,"
    " next_attempt_at) SELECT * FROM json_to_recordset(CAST(:rows AS json)) AS r(idempotency_key varchar,"
    " channel varchar, recipient varchar, template varchar, context json, urgent boolean, status varchar,"
    " attempts integer, created_at timestamptz, next_attempt_at timestamptz)"
    " ON CONFLICT (idempotency_key) DO NOTHING")


@dataclass
class DeliveryResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0


def backoff(attempts: int, base: float = 30.0, cap: float = 3600.0) -> timedelta:
    """Exponential backoff with full jitter."""
    return timedelta(seconds=random.uniform(0, min(cap, base * 2 ** max(0, attempts - 1))))


CLAIM_BATCH = 200  # due messages looked up at once; each is still claimed on its own
_OUTCOME = ("status", "last_error", "claimed_until", "next_attempt_at", "sent_at")  # what a delivery sets
_TABLE = metadata.tables[OutboxMessage.__tablename__]
_COLUMNS = _TABLE.c


def _due(now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    return or_(
        (_COLUMNS.status == PENDING) & (_COLUMNS.next_attempt_at <= now),
        (_COLUMNS.status == SENDING) & (_COLUMNS.claimed_until <= now),
    )


# Prepared once, Core, run on the session's connection: building them per message, and the ORM's execution
# path (a cache key per statement, the identity map, the unit of work), cost more than running them.
_CLAIM = (update(_TABLE)
          .where(_COLUMNS.id == bindparam("claim_id"),
                 _due(bindparam("claim_now", type_=_COLUMNS.next_attempt_at.type)))
          .values(status=SENDING, claimed_until=bindparam("claim_until", type_=_COLUMNS.claimed_until.type),
                  attempts=_COLUMNS.attempts + 1)
          .returning(*_TABLE.c))
_RECORD = (update(_TABLE).where(_COLUMNS.id == bindparam("record_id"))
           .values({c: bindparam(f"record_{c}", type_=_COLUMNS[c].type) for c in _OUTCOME}))


# Asks an engine made by ``workflow.db.create_db_engine`` to commit this transaction without waiting for
# the disk on SQLite (``synchronous=NORMAL`` under WAL; other databases ignore the option). The name is
# repeated here because this package imports nothing of ``workflow``. Why it is safe: decision 10.
_RELAXED_COMMIT = {"sqlite_synchronous": "NORMAL"}


def _connection(session: Session) -> Connection:
    """The session's connection; a new transaction of the delivery's starts with relaxed commits."""
    if session.in_transaction():
        return session.connection()
    return session.connection(execution_options=_RELAXED_COMMIT)


def _due_ids(session: Session, now: datetime, limit: int) -> list[int]:
    """The next due messages' ids, most urgent and oldest first. Reads only (then ends the transaction)."""
    stmt = (select(_COLUMNS.id).where(_due(now))
            .order_by(_COLUMNS.urgent.desc(), _COLUMNS.next_attempt_at, _COLUMNS.id).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)  # leave out rows another sender is claiming right now
    ids = list(_connection(session).scalars(stmt))
    session.rollback()
    return ids


class _Dispatch:
    """One delivery run's claims and outcomes: one commit per message, not two.

    The outcome of message N (``sent``, a retry, ``failed``) is written in the transaction that claims
    message N+1, and both commit together. A crash after N was sent and before that commit leaves N
    ``sending`` under its lease — exactly as a crash between a send and its own commit did — so it goes
    once more, with the same Message-ID, when the lease expires; N+1 was not claimed and goes once. The
    last outcome of a run is committed alone (``finish``), and so is a pending one when anything fails
    (``rescue``), so no outcome waits for a lease to expire unless the process itself died."""

    def __init__(self, session: Session, now: datetime, lease: timedelta) -> None:
        self.session, self.now, self.lease = session, now, lease
        # The order (urgent first, then oldest) is read ``CLAIM_BATCH`` ids at a time: that query reads and
        # sorts every due row, so running it for each message made a run quadratic in the backlog.
        self.candidates: deque[int] = deque()
        self.seen: set[int] = set()  # ids tried in this run: one another sender took is not tried again
        self.outcome: dict[str, Any] | None = None  # the last delivered message's outcome, not yet written
        self.channel_wrote = False  # and whether its channel wrote in the session, in the same transaction

    def claim(self) -> OutboxMessage | None:
        """Write the pending outcome, claim the next due message — ``sending`` with a lease, one more
        attempt — and commit both. None (the outcome committed) when nothing is due.

        Each candidate is claimed with a compare-and-set ``UPDATE … WHERE id = … AND <still due>
        RETURNING``: a message another sender took in the meantime matches no row (on PostgreSQL the
        UPDATE waits for a claim in progress, then re-checks)."""
        session = self.session
        conn = self._write_outcome()
        while True:
            if not self.candidates:
                if self.outcome is not None:
                    self._commit()  # the look-up ends its own transaction: the outcome goes first
                    conn = None
                self.candidates.extend(i for i in _due_ids(session, self.now, CLAIM_BATCH) if i not in self.seen)
                if not self.candidates:
                    return None
            message_id = self.candidates.popleft()
            self.seen.add(message_id)
            conn = conn or _connection(session)
            params = {"claim_id": message_id, "claim_now": self.now, "claim_until": self.now + self.lease}
            claimed = conn.execute(_CLAIM, params).first()
            if claimed is not None:
                self._commit()
                return _snapshot(claimed._asdict())
            if self.outcome is None:
                session.rollback()  # nothing written: end the transaction (and SQLite's write lock) now
                conn = None

    def delivered(self, message: OutboxMessage) -> None:
        """Keep the outcome ``_deliver_one`` set on ``message`` for the next commit, written with a prepared
        UPDATE (a unit-of-work flush of the object cost as much as the rest of a message's bookkeeping)."""
        self.outcome = {"record_id": message.id, **{f"record_{c}": getattr(message, c) for c in _OUTCOME}}
        # Whatever the channel wrote (the in-app inbox's row) belongs in the outcome's commit.
        self.channel_wrote = self.session.in_transaction()

    def finish(self) -> None:
        """Commit the last outcome of the run (with whatever its channel wrote)."""
        if self.outcome is not None:
            self._write_outcome()
            self._commit()

    def rescue(self) -> None:
        """After a failure mid-run (a claim's commit failed, say): the pending outcome in a transaction of
        its own, so the message is not sent again. Not when its channel wrote in that transaction: the
        outcome must not commit without those rows, and the message goes again once its lease expires (the
        in-app channel is idempotent). Best effort: the failure in hand is what propagates."""
        if self.outcome is None or self.channel_wrote:
            return
        try:
            self.session.rollback()
            self.finish()
        except Exception:
            log.exception("the outcome of message %s could not be recorded; it goes again when its lease "
                          "expires", self.outcome["record_id"])

    def _write_outcome(self) -> Connection | None:
        if self.outcome is None:
            return None
        conn = _connection(self.session)
        conn.execute(_RECORD, self.outcome)
        return conn

    def _commit(self) -> None:
        self.session.commit()
        self.outcome = None


def _snapshot(values: dict[str, Any]) -> OutboxMessage:
    """The claimed row as a transient ``OutboxMessage`` for the channels. Never in a session: nothing
    expires it at a commit or flushes it, and reading it while sending starts no transaction (on SQLite,
    BEGIN IMMEDIATE would hold the write lock for the send). Its loaded values go straight into its
    ``__dict__``, where attribute reads look first, as a load from the database puts them: setting 18
    instrumented attributes through the constructor cost a fifth of a message's bookkeeping."""
    message = OutboxMessage()
    message.__dict__.update(values)
    return message


def _claim(session: Session, now: datetime, lease: timedelta) -> OutboxMessage | None:
    """Claim the next due message and commit (a sender that then dies, in tests)."""
    return _Dispatch(session, now, lease).claim()


def deliver_due(session: Session, now: datetime, channels: Mapping[str, Channel], templates: Templates, *,
                max_attempts: int = DEFAULT_MAX_ATTEMPTS, limit: int = 10_000,
                lease: timedelta = DEFAULT_LEASE) -> DeliveryResult:
    """Send the messages whose time has come: per message one commit, holding its claim and the previous
    message's outcome (``_Dispatch``). A message that becomes due (or urgent) during a run may wait for the
    next ``CLAIM_BATCH`` lookup."""
    result = DeliveryResult()
    run = _Dispatch(session, now, lease)
    try:
        for _ in range(limit):
            message = run.claim()
            if message is None:
                break
            _deliver_one(session, message, now, channels, templates, max_attempts, result)
            run.delivered(message)
        run.finish()
    except Exception:
        run.rescue()
        raise
    finally:
        for channel in channels.values():
            channel.close()
    return result


def _deliver_one(session: Session, message: OutboxMessage, now: datetime, channels: Mapping[str, Channel],
                 templates: Templates, max_attempts: int, result: DeliveryResult) -> None:
    channel = channels.get(message.channel)
    try:
        if channel is None:
            raise PermanentFailure(f"no channel '{message.channel}' is configured")
        try:
            rendered = templates.render(message.template, message.context)
        except TemplateProblem as exc:
            raise PermanentFailure(str(exc)) from None
        channel.send(session, message, rendered)
    except PermanentFailure as exc:
        message.status, message.last_error, message.claimed_until = FAILED, str(exc)[:2000], None
        result.failed += 1
        log.warning("message %s failed permanently: %s", message.id, exc)
    except Exception as exc:  # TemporaryFailure or anything unexpected: retry until the limit
        message.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        message.claimed_until = None
        if message.attempts >= max_attempts:
            message.status = FAILED
            result.failed += 1
            log.error("message %s failed after %s attempts: %s", message.id, message.attempts, message.last_error)
        else:
            message.status = PENDING
            message.next_attempt_at = now + backoff(message.attempts)
            result.retried += 1
            level = logging.WARNING if isinstance(exc, TemporaryFailure) else logging.ERROR
            log.log(level, "message %s attempt %s failed: %s", message.id, message.attempts, message.last_error)
    else:
        message.status, message.sent_at, message.last_error, message.claimed_until = SENT, now, None, None
        result.sent += 1


# -- the in-app inbox ---------------------------------------------------------------------------------


def unread_count(session: Session, recipient: str) -> int:
    stmt = select(func.count()).select_from(InboxItem).where(InboxItem.recipient == recipient,
                                                             InboxItem.read_at.is_(None))
    return int(session.scalar(stmt) or 0)


def list_inbox(session: Session, recipient: str, *, limit: int = 50) -> list[InboxItem]:
    stmt = (select(InboxItem).where(InboxItem.recipient == recipient)
            .order_by(InboxItem.created_at.desc(), InboxItem.id.desc()).limit(limit))
    return list(session.scalars(stmt))


def mark_read(session: Session, recipient: str, item_id: int, now: datetime) -> bool:
    """Mark one of the recipient's items read. False if there is no such item of theirs."""
    item = session.get(InboxItem, item_id)
    if item is None or item.recipient != recipient:
        return False
    if item.read_at is None:
        item.read_at = now
        session.flush()
    return True


def list_failed(session: Session, *, limit: int = 200) -> list[OutboxMessage]:
    stmt = select(OutboxMessage).where(OutboxMessage.status == FAILED).order_by(OutboxMessage.id.desc()).limit(limit)
    return list(session.scalars(stmt))
