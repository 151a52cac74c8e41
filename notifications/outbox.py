"""Enqueue messages inside the caller's transaction; deliver them after commit.

``enqueue`` is idempotent on its key, so a handler that runs twice (a crash between its effect and
its bookkeeping) still produces one message. ``deliver_due`` is a boundary: it commits per message.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from notifications.models import FAILED, PENDING, SENT, OutboxMessage

log = logging.getLogger(__name__)


class TemporaryFailure(Exception):
    """Worth retrying (server down, rate limited)."""


class PermanentFailure(Exception):
    """Never worth retrying (address rejected, validation error)."""


class Channel(Protocol):
    name: str

    def send(self, message: OutboxMessage) -> None:
        """Deliver or raise TemporaryFailure / PermanentFailure."""
        ...


class LogChannel:
    """Development default: writes the message to the log (no identity is ever in a message)."""

    name = "log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.sent: list[OutboxMessage] = []
        self._log = logger or logging.getLogger("notifications.log_channel")

    def send(self, message: OutboxMessage) -> None:
        self._log.info("message %s to %s: %s %s", message.idempotency_key, message.recipient, message.template,
                       message.context)
        self.sent.append(message)


def enqueue(session: Session, key: str, channel: str, recipient: str, template: str,
            context: Mapping[str, Any], now: datetime, *, urgent: bool = False) -> bool:
    """Add a message unless one with the same key exists. Returns True if it was added."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(OutboxMessage).values(
        idempotency_key=key, channel=channel, recipient=recipient, template=template, context=dict(context),
        urgent=urgent, status=PENDING, attempts=0, created_at=now, next_attempt_at=now,
    ).on_conflict_do_nothing(index_elements=[OutboxMessage.idempotency_key])
    result = session.execute(stmt)
    return bool(getattr(result, "rowcount", 0))


@dataclass
class DeliveryResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0


def backoff(attempts: int, base: float = 30.0, cap: float = 3600.0) -> timedelta:
    """Exponential backoff with full jitter."""
    return timedelta(seconds=random.uniform(0, min(cap, base * 2 ** max(0, attempts - 1))))


def deliver_due(session: Session, now: datetime, channels: Mapping[str, Channel], *, max_attempts: int = 8,
                limit: int = 1000) -> DeliveryResult:
    """Send pending messages whose time has come, committing after each."""
    result = DeliveryResult()
    for _ in range(limit):
        stmt = (select(OutboxMessage).where(OutboxMessage.status == PENDING, OutboxMessage.next_attempt_at <= now)
                .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id).limit(1)
                .with_for_update(skip_locked=True))
        message = session.scalars(stmt).first()
        if message is None:
            break
        channel = channels.get(message.channel)
        message.attempts += 1
        try:
            if channel is None:
                raise PermanentFailure(f"no channel '{message.channel}' is configured")
            channel.send(message)
        except PermanentFailure as exc:
            message.status, message.last_error = FAILED, str(exc)[:2000]
            result.failed += 1
            log.warning("message %s failed permanently: %s", message.id, exc)
        except Exception as exc:  # any other failure is retried with backoff until the limit
            message.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            if message.attempts >= max_attempts:
                message.status = FAILED
                result.failed += 1
            else:
                message.next_attempt_at = now + backoff(message.attempts)
                result.retried += 1
            log.warning("message %s attempt %s failed: %s", message.id, message.attempts, message.last_error)
        else:
            message.status, message.sent_at, message.last_error = SENT, now, None
            result.sent += 1
        session.commit()
    return result
