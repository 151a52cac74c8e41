"""Enqueue messages inside the caller's transaction; deliver them after commit.

``enqueue`` is idempotent on its key, so a handler that runs twice (a crash between its effect and
its bookkeeping) still produces one message. ``deliver_due`` is a boundary: it claims a message
(``sending``, with a lease) and commits, sends it, then records ``sent`` / retry / ``failed`` and
commits again. A sender that dies between the send and the second commit leaves the lease to expire;
the message is then sent once more, with the same Message-ID. Failures retry with exponential
backoff and full jitter until ``max_attempts``, then end ``failed`` — never silently dropped.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, bindparam, func, or_, select, update
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


@dataclass
class DeliveryResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0


def backoff(attempts: int, base: float = 30.0, cap: float = 3600.0) -> timedelta:
    """Exponential backoff with full jitter."""
    return timedelta(seconds=random.uniform(0, min(cap, base * 2 ** max(0, attempts - 1))))


CLAIM_BATCH = 200  # due messages looked up at once; each is still claimed and committed on its own
_OUTCOME = ("status", "last_error", "claimed_until", "next_attempt_at", "sent_at")  # what a delivery sets
_TABLE = metadata.tables[OutboxMessage.__tablename__]
_COLUMNS = _TABLE.c


def _due(now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    return or_(
        (OutboxMessage.status == PENDING) & (OutboxMessage.next_attempt_at <= now),
        (OutboxMessage.status == SENDING) & (OutboxMessage.claimed_until <= now),
    )


# Prepared once: building and caching these per message cost more than running them.
_CLAIM = (update(OutboxMessage)
          .where(OutboxMessage.id == bindparam("claim_id"),
                 _due(bindparam("claim_now", type_=_COLUMNS.next_attempt_at.type)))
          .values(status=SENDING, claimed_until=bindparam("claim_until", type_=_COLUMNS.claimed_until.type),
                  attempts=OutboxMessage.attempts + 1)
          .returning(OutboxMessage)
          .execution_options(populate_existing=True, synchronize_session=False))
_RECORD = (update(_TABLE).where(_COLUMNS.id == bindparam("record_id"))
           .values({c: bindparam(f"record_{c}", type_=_COLUMNS[c].type) for c in _OUTCOME}))


def _due_ids(session: Session, now: datetime, limit: int) -> list[int]:
    """The next due messages' ids, most urgent and oldest first. Reads only (then ends the transaction)."""
    stmt = (select(OutboxMessage.id).where(_due(now))
            .order_by(OutboxMessage.urgent.desc(), OutboxMessage.next_attempt_at, OutboxMessage.id).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)  # leave out rows another sender is claiming right now
    ids = list(session.scalars(stmt))
    session.rollback()
    return ids


def _claim(session: Session, now: datetime, lease: timedelta, candidates: deque[int] | None = None,
           seen: set[int] | None = None) -> OutboxMessage | None:
    """Claim the next due message — ``sending`` with a lease, one more attempt — and commit.

    The order (urgent first, then oldest) is read ``CLAIM_BATCH`` ids at a time into ``candidates``: that
    query reads and sorts every due row, so running it for each message made a run quadratic in the
    backlog. Each candidate is then claimed on its own with a compare-and-set ``UPDATE … WHERE id = …
    AND <still due> RETURNING``: a message another sender took in the meantime matches no row (on
    PostgreSQL the UPDATE waits for a claim in progress, then re-checks). ``seen`` (ids tried in this
    run) keeps such a message from being tried again and again."""
    queue = deque[int]() if candidates is None else candidates
    tried = set[int]() if seen is None else seen
    while True:
        if not queue:
            queue.extend(i for i in _due_ids(session, now, CLAIM_BATCH) if i not in tried)
            if not queue:
                return None
        message_id = queue.popleft()
        tried.add(message_id)
        params = {"claim_id": message_id, "claim_now": now, "claim_until": now + lease}
        message = session.scalars(_CLAIM, params).first()
        if message is None:
            session.rollback()
            continue
        session.commit()
        return message


def deliver_due(session: Session, now: datetime, channels: Mapping[str, Channel], templates: Templates, *,
                max_attempts: int = DEFAULT_MAX_ATTEMPTS, limit: int = 10_000,
                lease: timedelta = DEFAULT_LEASE) -> DeliveryResult:
    """Send the messages whose time has come, each claimed, sent and recorded in its own commits.
    A message that becomes due (or urgent) during a run may wait for the next ``CLAIM_BATCH`` lookup."""
    result = DeliveryResult()
    candidates: deque[int] = deque()
    seen: set[int] = set()
    try:
        for _ in range(limit):
            message = _claim(session, now, lease, candidates, seen)
            if message is None:
                break
            _deliver_one(session, message, now, channels, templates, max_attempts, result)
            _record(session, message)
            session.commit()
    finally:
        for channel in channels.values():
            channel.close()
    return result


def _record(session: Session, message: OutboxMessage) -> None:
    """Write the outcome ``_deliver_one`` set on ``message`` with the prepared UPDATE; the session forgets
    the object (a unit-of-work flush of it cost as much as the rest of a message's bookkeeping)."""
    params = {f"record_{c}": getattr(message, c) for c in _OUTCOME}
    session.expunge(message)
    session.execute(_RECORD, {"record_id": message.id, **params})


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
