"""Enqueue messages inside the caller's transaction; deliver them after commit.

``enqueue`` is idempotent on its key, so a handler that runs twice (a crash between its effect and
its bookkeeping) still produces one message. ``deliver_due`` is a boundary: it claims a batch of due
messages (``sending``, with a lease) and commits, sends them, and records ``sent`` / retry / ``failed``
in the commit that claims the next batch (sooner if a send is slow; the run's last outcomes in a commit
of their own). A sender that dies between a send and that commit leaves the lease to expire; the message
is then sent once more, with the same Message-ID. Failures retry with exponential backoff and full
jitter until ``max_attempts``, then end ``failed`` — never silently dropped.
"""

from __future__ import annotations

import json
import logging
import random
import time
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


LOOKUP_BATCH = 200  # due ids read at once, in delivery order
CLAIM_BATCH = 10  # messages claimed in one commit (with the outcomes recorded since the last one)
OUTCOME_WINDOW = 0.5  # seconds after a commit: outcomes in hand are then committed before the next send
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
          .where(_COLUMNS.id.in_(bindparam("claim_ids", expanding=True)),
                 _due(bindparam("claim_now", type_=_COLUMNS.next_attempt_at.type)))
          .values(status=SENDING, claimed_until=bindparam("claim_until", type_=_COLUMNS.claimed_until.type),
                  attempts=_COLUMNS.attempts + 1)
          .returning(*_TABLE.c))
_RECORD = (update(_TABLE).where(_COLUMNS.id == bindparam("record_id"))
           .values({c: bindparam(f"record_{c}", type_=_COLUMNS[c].type) for c in _OUTCOME}))
# Gives back claims this run will not send (only while they are still this run's: same lease, still sending).
_RELEASE = (update(_TABLE)
            .where(_COLUMNS.id.in_(bindparam("release_ids", expanding=True)), _COLUMNS.status == SENDING,
                   _COLUMNS.claimed_until == bindparam("release_until", type_=_COLUMNS.claimed_until.type))
            .values(status=PENDING, claimed_until=None, attempts=_COLUMNS.attempts - 1))


# Asks an engine made by ``workflow.db.create_db_engine`` to commit this transaction without waiting for
# the disk on SQLite (``synchronous=NORMAL`` under WAL; other databases ignore the option). The name is
# repeated here because this package imports nothing of ``workflow``. Why it is safe: decision 10.
_RELAXED_COMMIT = {"sqlite_synchronous": "NORMAL"}
_ASYNC_COMMIT = text("SET LOCAL synchronous_commit = off")  # PostgreSQL's equivalent, for one transaction


def _connection(session: Session) -> Connection:
    """The session's connection; a new transaction of the delivery's starts with relaxed commits (on
    SQLite ``synchronous=NORMAL``, on PostgreSQL ``synchronous_commit = off`` for this transaction)."""
    if session.in_transaction():
        return session.connection()
    conn = session.connection(execution_options=_RELAXED_COMMIT)
    if conn.dialect.name == "postgresql":
        conn.execute(_ASYNC_COMMIT)
    return conn


def _due_ids(conn: Connection, now: datetime, limit: int) -> list[int]:
    """The next due messages' ids, most urgent and oldest first, in the caller's transaction. On PostgreSQL
    rows another sender is claiming right now are left out, and the ones read stay locked until this
    transaction ends (a moment later, with their claim)."""
    stmt = (select(_COLUMNS.id).where(_due(now))
            .order_by(_COLUMNS.urgent.desc(), _COLUMNS.next_attempt_at, _COLUMNS.id).limit(limit))
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(conn.scalars(stmt))


@dataclass
class _Outcome:
    params: dict[str, Any]  # for _RECORD
    wrote: bool  # its channel wrote rows in the session (the in-app inbox), which commit with it


class _Dispatch:
    """One delivery run's claims and outcomes, a commit per batch of messages rather than two per message
    (decision 10).

    Up to ``batch`` due messages are claimed together — ``sending``, with a lease, one more attempt — in
    one commit, which also writes the outcomes (``sent``, a retry, ``failed``) of the messages sent since
    the last one. Nothing is held while a message is sent: claimed messages are detached snapshots and
    outcomes wait in memory, so no transaction (and on SQLite no write lock) spans a send.

    What a crash costs: messages sent whose outcomes were not yet committed stay ``sending`` under their
    lease and go once more, with the same Message-ID, when it expires — at most a batch of them, and only
    those sent since the last commit (once ``OUTCOME_WINDOW`` seconds have passed since it, the outcomes in
    hand are committed before the next send). Messages claimed but not yet sent go once, after their
    lease. Without a crash nothing waits for a lease: a failure gives back the unsent claims and records
    the outcomes in hand (``rescue``), and a claim is only sent while at least half its lease is left —
    the rest are given back and claimed anew.
    """

    def __init__(self, session: Session, now: datetime, lease: timedelta, limit: int,
                 batch: int = CLAIM_BATCH) -> None:
        if batch < 1:
            raise ValueError("a delivery claims at least one message at a time")
        self.session, self.now, self.lease, self.remaining, self.batch = session, now, lease, limit, batch
        self.started = time.monotonic()
        # The order (urgent first, then oldest) is read ``LOOKUP_BATCH`` ids at a time: that query reads and
        # sorts every due row, so running it for each claim made a run quadratic in the backlog.
        self.candidates: deque[int] = deque()
        self.seen: set[int] = set()  # ids tried in this run: one another sender took is not tried again
        self.claimed: deque[OutboxMessage] = deque()  # claimed, not yet sent
        self.claimed_until: datetime | None = None  # their lease, as written
        self.claimed_at = 0.0  # when (monotonic)
        self.outcomes: list[_Outcome] = []  # of sent messages, not yet written
        self.committed_at = self.started  # the last commit (monotonic)

    def next(self) -> OutboxMessage | None:
        """The next message to send: the next one claimed, or the first of a new batch, claimed with the
        outcomes so far in one commit. None when nothing is due or the run's limit is reached (the outcomes
        are then committed too)."""
        if self.claimed and time.monotonic() - self.claimed_at > self.lease.total_seconds() / 2:
            self._release()  # sending took long: do not send on a lease that may run out meanwhile
        elif self.claimed and self.outcomes and time.monotonic() - self.committed_at >= OUTCOME_WINDOW:
            self._write_outcomes(_connection(self.session))  # slow sends: what was sent is recorded
            self._commit()
        if not self.claimed:
            self._claim(min(self.batch, self.remaining))
        return self.claimed.popleft() if self.claimed else None

    def delivered(self, message: OutboxMessage) -> None:
        """Keep the outcome ``_deliver_one`` set on ``message`` for the next commit, written with a prepared
        UPDATE: the next claim's, or before the next send once ``OUTCOME_WINDOW`` has passed since the last
        commit — or now if the channel wrote in the session (the in-app inbox's row: no transaction may
        stay open across the next send)."""
        wrote = self.session.in_transaction()  # nothing else opens one between claims
        self.outcomes.append(_Outcome({"record_id": message.id, **{f"record_{c}": getattr(message, c)
                                                                  for c in _OUTCOME}}, wrote))
        if wrote:
            self._write_outcomes(_connection(self.session))
            self._commit()

    def finish(self) -> None:
        """Commit the outcomes in hand (with whatever their channels wrote) and give back unsent claims."""
        self._release()
        if self.outcomes:
            self._write_outcomes(_connection(self.session))
            self._commit()

    def rescue(self) -> None:
        """After a failure mid-run (a commit failed, say): the outcomes in hand and the return of unsent
        claims in a transaction of their own, so sent messages are not sent again and unsent ones do not
        wait for their lease. Not the outcome of a message whose channel wrote in the failed transaction:
        it must not commit without those rows, so that message goes again once its lease expires (the
        in-app channel is idempotent). Best effort: the failure in hand is what propagates."""
        self.outcomes = [o for o in self.outcomes if not o.wrote]
        if not self.outcomes and not self.claimed:
            return
        try:
            self.session.rollback()
            self.finish()
        except Exception:
            log.exception("the outcomes of messages %s could not be recorded, nor claims of %s given back; "
                          "they go again when their leases expire",
                          [o.params["record_id"] for o in self.outcomes], [m.id for m in self.claimed])

    def _claim(self, count: int) -> None:
        """Write the outcomes in hand, claim up to ``count`` due messages (each with a compare-and-set on
        "still due": one another sender took meanwhile matches no row), and commit; or, with nothing to
        claim, just commit the outcomes."""
        session = self.session
        conn = self._write_outcomes(_connection(session)) if self.outcomes else None
        while count > 0:
            if not self.candidates:
                conn = conn or _connection(session)
                self.candidates.extend(i for i in _due_ids(conn, self.now, LOOKUP_BATCH) if i not in self.seen)
                if not self.candidates:
                    break
            ids = [self.candidates.popleft() for _ in range(min(count, len(self.candidates)))]
            self.seen.update(ids)
            conn = conn or _connection(session)
            # The lease runs from the time of the claim, not from the run's ``now`` (a long run's late claims
            # would otherwise be expired when made), in whole seconds, so a run's first claims end exactly at
            # ``now + lease``.
            until = self.now + timedelta(seconds=int(time.monotonic() - self.started)) + self.lease
            rows = conn.execute(_CLAIM, {"claim_ids": ids, "claim_now": self.now, "claim_until": until}).all()
            if rows:
                order = {message_id: i for i, message_id in enumerate(ids)}
                claimed = sorted((_snapshot(r._asdict()) for r in rows), key=lambda m: order[m.id])
                self._commit()
                self.claimed.extend(claimed)
                self.claimed_until, self.claimed_at = until, time.monotonic()
                self.remaining -= len(claimed)
                return
        if self.outcomes:
            self._commit()
        elif session.in_transaction():
            session.rollback()  # nothing written: end the transaction (and on SQLite the write lock)

    def _release(self) -> None:
        """Give back the claims not sent (their attempt undone, due again at once) and commit."""
        if not self.claimed:
            return
        ids = [m.id for m in self.claimed]
        conn = self._write_outcomes(_connection(self.session)) if self.outcomes else _connection(self.session)
        conn.execute(_RELEASE, {"release_ids": ids, "release_until": self.claimed_until})
        self._commit()
        self.claimed.clear()
        self.remaining += len(ids)
        self.seen.difference_update(ids)  # due again: claimed anew, first, if the run goes on
        self.candidates.extendleft(reversed(ids))

    def _commit(self) -> None:
        self.session.commit()
        self.outcomes = []
        self.committed_at = time.monotonic()

    def _write_outcomes(self, conn: Connection) -> Connection:
        conn.execute(_RECORD, [o.params for o in self.outcomes])
        return conn


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
    return _Dispatch(session, now, lease, limit=1).next()


def deliver_due(session: Session, now: datetime, channels: Mapping[str, Channel], templates: Templates, *,
                max_attempts: int = DEFAULT_MAX_ATTEMPTS, limit: int = 10_000,
                lease: timedelta = DEFAULT_LEASE, batch: int = CLAIM_BATCH) -> DeliveryResult:
    """Send the messages whose time has come, at most ``limit``: claimed ``batch`` at a time in one commit
    that also records the outcomes of the messages sent before (``_Dispatch``). A message that becomes due
    (or urgent) during a run may wait for the next ``LOOKUP_BATCH`` lookup."""
    result = DeliveryResult()
    run = _Dispatch(session, now, lease, limit, batch)
    try:
        while (message := run.next()) is not None:
            _deliver_one(session, message, now, channels, templates, max_attempts, result)
            run.delivered(message)
        run.finish()
    except BaseException:  # an interrupt too: what was sent is recorded, what was claimed is given back
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


def list_inbox(session: Session, recipient: str, *, limit: int = 50, unread: bool = False) -> list[InboxItem]:
    """The recipient's items, newest first (``unread``: only those not read yet)."""
    stmt = select(InboxItem).where(InboxItem.recipient == recipient)
    if unread:
        stmt = stmt.where(InboxItem.read_at.is_(None))
    return list(session.scalars(stmt.order_by(InboxItem.created_at.desc(), InboxItem.id.desc()).limit(limit)))


def inbox_item(session: Session, recipient: str, item_id: int) -> InboxItem | None:
    """One of the recipient's items, or None (another's is none at all)."""
    item = session.get(InboxItem, item_id)
    return item if item is not None and item.recipient == recipient else None


def mark_all_read(session: Session, recipient: str, now: datetime) -> None:
    session.execute(update(InboxItem).where(InboxItem.recipient == recipient, InboxItem.read_at.is_(None))
                    .values(read_at=now))


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
