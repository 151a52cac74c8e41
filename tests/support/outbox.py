"""Queue, deliver and read back outbox messages in tests of one channel."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from notifications.channels import Channel
from notifications.models import OutboxMessage
from notifications.outbox import DeliveryResult, deliver_due, enqueue
from reprisals.messaging import SAMPLES, message_templates
from tests.conftest import Database

NOW = datetime(2025, 4, 16, 9, 30, tzinfo=UTC)
TO = "caseworker@body.example"
TEMPLATES = message_templates()


def queue(database: Database, channel: str, key: str, recipient: str = TO, template: str = "reminder") -> None:
    with database.session() as s:
        assert enqueue(s, key, channel, recipient, template, SAMPLES[template], NOW)
        s.commit()


def deliver(database: Database, channel: Channel, now: datetime = NOW) -> DeliveryResult:
    with database.session() as s:
        return deliver_due(s, now, {channel.name: channel}, TEMPLATES)


def row(database: Database, key: str) -> OutboxMessage:
    with database.session() as s:
        message = s.scalars(select(OutboxMessage).where(OutboxMessage.idempotency_key == key)).one()
        s.expunge(message)
        return message
