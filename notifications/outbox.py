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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from notifications.channels import Channel, PermanentFailure, TemporaryFailure
from notifications.models import FAILED, PENDING, SENDING, SENT, InboxItem, OutboxMessage
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


def _claim(session: Session, now: datetime, lease: timedelta) -> OutboxMessage | None:
    stmt = (select(OutboxMessage)
            .where(or_(
                (OutboxMessage.status == PENDING) & (OutboxMessage.next_attempt_at <= now),
                (OutboxMessage.status == SENDING) & (OutboxMessage.claimed_until <= now),
            ))
            .order_by(OutboxMessage.urgent.desc(), OutboxMessage.next_attempt_at, OutboxMessage.id).limit(1))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    message = session.scalars(stmt).first()
    if message is None:
        session.rollback()
        return None
    message.status, message.claimed_until = SENDING, now + lease
    message.attempts += 1
    session.commit()
    return message


def deliver_due(session: Session, now: datetime, channels: Mapping[str, Channel], templates: Templates, *,
                max_attempts: int = DEFAULT_MAX_ATTEMPTS, limit: int = 10_000,
                lease: timedelta = DEFAULT_LEASE) -> DeliveryResult:
    """Send the messages whose time has come, each claimed, sent and recorded in its own commits."""
    result = DeliveryResult()
    try:
        for _ in range(limit):
            message = _claim(session, now, lease)
            if message is None:
                break
            _deliver_one(session, message, now, channels, templates, max_attempts, result)
            session.commit()
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
