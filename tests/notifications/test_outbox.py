"""The outbox on a real database (SQLite and PostgreSQL): enqueue once per key, deliver in order,
retry with backoff until the limit and then fail visibly, re-send a message whose sender died once
its lease expires, and the in-app inbox.

The channel here is a recording fake of our own ``Channel`` port (the real SMTP and Notify channels
have their own tests); the templates are this package's own, not the domain's: ``notifications``
knows nothing of cases.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import jinja2
from sqlalchemy import select
from sqlalchemy.orm import Session

from notifications.channels import InAppChannel, PermanentFailure, TemporaryFailure
from notifications.models import FAILED, PENDING, SENDING, SENT, InboxItem, OutboxMessage
from notifications.outbox import (
    _claim,
    deliver_due,
    enqueue,
    list_failed,
    list_inbox,
    mark_read,
    unread_count,
)
from notifications.templates import Rendered, Templates
from tests.conftest import Database

NOW = datetime(2025, 4, 30, 8, 0, tzinfo=UTC)
TEMPLATES = Templates(jinja2.DictLoader({
    "note.subject.txt": "Note {{ n }}",
    "note.txt": "Note number {{ n }}: {{ url }}",
    "note.html": "<p>Note number {{ n }}</p>",
}), ["note"])


class Recording:
    """A channel that records what it is given; ``fail`` decides, per message, what it raises."""

    def __init__(self, name: str = "mail", fail: Callable[[OutboxMessage], Exception | None] | None = None) -> None:
        self.name = name
        self.fail = fail or (lambda _message: None)
        self.sent: list[tuple[str, str, str]] = []  # (key, recipient, subject)
        self.attempts = 0
        self.closed = 0

    def send(self, session: Session, message: OutboxMessage, rendered: Rendered) -> None:
        self.attempts += 1
        error = self.fail(message)
        if error is not None:
            raise error
        self.sent.append((message.idempotency_key, message.recipient, rendered.subject))

    def close(self) -> None:
        self.closed += 1


def put(s: Session, key: str, *, n: int = 1, channel: str = "mail", recipient: str = "a@example.test",
        template: str = "note", now: datetime = NOW, urgent: bool = False, not_before: datetime | None = None) -> bool:
    added = enqueue(s, key, channel, recipient, template, {"n": n, "url": f"https://x.test/{n}"}, now,
                    urgent=urgent, not_before=not_before)
    s.commit()
    return added


def row(s: Session, key: str) -> OutboxMessage:
    s.expire_all()
    return s.scalars(select(OutboxMessage).where(OutboxMessage.idempotency_key == key)).one()


def deliver(s: Session, now: datetime, *channels: Recording | InAppChannel, max_attempts: int = 8,
            lease: timedelta = timedelta(minutes=5)):  # type: ignore[no-untyped-def]
    return deliver_due(s, now, {c.name: c for c in channels}, TEMPLATES, max_attempts=max_attempts, lease=lease)


# -- enqueue ------------------------------------------------------------------------------------------


def test_one_row_keeps_the_first_message_when_the_same_key_is_enqueued_twice(database: Database) -> None:
    with database.session() as s:
        assert put(s, "k1", n=1) is True
        assert put(s, "k1", n=2, recipient="b@example.test", now=NOW + timedelta(hours=1)) is False

        rows = list(s.scalars(select(OutboxMessage)))
        assert len(rows) == 1
        (m,) = rows
        assert (m.idempotency_key, m.recipient, m.context["n"], m.status, m.attempts, m.created_at) == (
            "k1", "a@example.test", 1, PENDING, 0, NOW)


def test_urgent_messages_go_first_then_the_oldest_when_several_are_due(database: Database) -> None:
    with database.session() as s:
        put(s, "old", now=NOW - timedelta(hours=3))
        put(s, "held", now=NOW - timedelta(hours=4), not_before=NOW - timedelta(hours=1))  # due an hour ago
        put(s, "urgent-new", now=NOW - timedelta(minutes=1), urgent=True)
        put(s, "newer", now=NOW - timedelta(hours=2))
        put(s, "urgent-old", now=NOW - timedelta(hours=5), urgent=True)
        put(s, "future", now=NOW, not_before=NOW + timedelta(minutes=1))
        mail = Recording()

        result = deliver(s, NOW, mail)

        assert [key for key, _, _ in mail.sent] == ["urgent-old", "urgent-new", "old", "newer", "held"]
        assert (result.sent, result.retried, result.failed) == (5, 0, 0)
        assert row(s, "future").status == PENDING  # not before its time
        assert mail.closed == 1  # connections are released at the end of a run


# -- failures -----------------------------------------------------------------------------------------


def test_message_retries_with_backoff_then_ends_failed_and_is_never_retried_when_temporary_failures_persist(
        database: Database) -> None:
    mail = Recording(fail=lambda _m: TemporaryFailure("421 try again later"))
    with database.session() as s:
        put(s, "flaky")
        put(s, "fine", channel="ok")
        ok = Recording("ok")
        now = NOW

        for attempt in (1, 2):
            result = deliver(s, now, mail, ok, max_attempts=3)
            assert (result.retried, result.failed) == (1, 0)
            m = row(s, "flaky")
            assert (m.status, m.attempts, m.last_error) == (PENDING, attempt, "TemporaryFailure: 421 try again later")
            # Exponential backoff with full jitter: at most 30 s, then 60 s, ... later.
            assert now < m.next_attempt_at <= now + timedelta(seconds=30 * 2 ** (attempt - 1))
            assert m.claimed_until is None
            # Not before its time: a run just before the retry is due leaves it alone.
            assert deliver(s, m.next_attempt_at - timedelta(microseconds=1), mail, max_attempts=3).retried == 0
            assert mail.attempts == attempt
            now = m.next_attempt_at

        result = deliver(s, now, mail, max_attempts=3)

        assert (result.sent, result.retried, result.failed) == (0, 0, 1)
        m = row(s, "flaky")
        assert (m.status, m.attempts, m.sent_at) == (FAILED, 3, None)
        assert m.last_error == "TemporaryFailure: 421 try again later"
        assert [f.idempotency_key for f in list_failed(s)] == ["flaky"]  # visible to operators
        assert row(s, "fine").status == SENT  # one bad message holds nobody else up
        assert deliver(s, now + timedelta(days=30), mail, max_attempts=3).failed == 0
        assert mail.attempts == 3  # never tried again


def test_message_fails_at_once_when_the_channel_says_the_failure_is_permanent(database: Database) -> None:
    mail = Recording(fail=lambda m: PermanentFailure("550 no such user") if m.idempotency_key == "bad" else None)
    with database.session() as s:
        put(s, "bad", recipient="nobody@example.test")
        put(s, "good", n=2)

        result = deliver(s, NOW, mail)

        assert (result.sent, result.retried, result.failed) == (1, 0, 1)
        bad = row(s, "bad")
        assert (bad.status, bad.attempts, bad.last_error, bad.claimed_until) == (FAILED, 1, "550 no such user", None)
        assert [key for key, _, _ in mail.sent] == ["good"]
        assert [f.idempotency_key for f in list_failed(s)] == ["bad"]
        deliver(s, NOW + timedelta(days=1), mail)
        assert mail.attempts == 2  # once each; the failed message is not tried again


def test_message_fails_with_a_clear_error_and_nothing_is_lost_when_its_channel_is_unknown(
        database: Database) -> None:
    with database.session() as s:
        put(s, "pigeon", channel="carrier-pigeon", n=7)
        put(s, "mail", n=8)
        mail = Recording()

        result = deliver(s, NOW, mail)

        assert (result.sent, result.failed) == (1, 1)
        m = row(s, "pigeon")
        assert (m.status, m.last_error) == (FAILED, "no channel 'carrier-pigeon' is configured")
        # The row is kept whole, so it can be put right and re-sent.
        assert (m.channel, m.recipient, m.template, m.context) == (
            "carrier-pigeon", "a@example.test", "note", {"n": 7, "url": "https://x.test/7"})
        assert [f.idempotency_key for f in list_failed(s)] == ["pigeon"]
        assert [key for key, _, _ in mail.sent] == ["mail"]


def test_message_is_sent_once_more_after_the_lease_expires_and_not_before_when_its_sender_died(
        database: Database) -> None:
    lease = timedelta(minutes=5)
    with database.session() as s:
        put(s, "k")
    # A sender claims the message (and commits the claim), then dies before recording the outcome.
    with database.session() as dead:
        claimed = _claim(dead, NOW, lease)
        assert claimed is not None and claimed.idempotency_key == "k"
    mail = Recording()
    with database.session() as s:
        m = row(s, "k")
        assert (m.status, m.attempts, m.claimed_until) == (SENDING, 1, NOW + lease)

        assert deliver(s, NOW + lease - timedelta(seconds=1), mail, lease=lease).sent == 0  # still held
        assert mail.sent == [] and row(s, "k").status == SENDING

        result = deliver(s, NOW + lease, mail, lease=lease)

        assert result.sent == 1
        assert [key for key, _, _ in mail.sent] == ["k"]
        m = row(s, "k")
        assert (m.status, m.attempts, m.sent_at, m.claimed_until) == (SENT, 2, NOW + lease, None)
        assert deliver(s, NOW + timedelta(days=1), mail, lease=lease).sent == 0
        assert len(mail.sent) == 1  # once, not again


# -- the in-app inbox -----------------------------------------------------------------------------------


def test_one_inbox_item_per_message_when_the_inapp_channel_delivers_it_twice(database: Database) -> None:
    with database.session() as s:
        put(s, "m1", channel="inapp", recipient="7", n=1, now=NOW - timedelta(minutes=2))
        put(s, "m2", channel="inapp", recipient="7", n=2, now=NOW - timedelta(minutes=1))
        put(s, "m3", channel="inapp", recipient="8", n=3)
        inapp = InAppChannel()

        assert deliver(s, NOW, inapp).sent == 3
        # Sent again, as after a lease expired: the item is not duplicated.
        again = row(s, "m1")
        inapp.send(s, again, TEMPLATES.render("note", again.context))
        s.commit()

        assert len(list(s.scalars(select(InboxItem)))) == 3
        assert (unread_count(s, "7"), unread_count(s, "8"), unread_count(s, "9")) == (2, 1, 0)
        items = list_inbox(s, "7")
        assert [(i.message_key, i.subject, i.body, i.link, i.created_at) for i in items] == [
            ("m2", "Note 2", "Note number 2: https://x.test/2", "https://x.test/2", NOW - timedelta(minutes=1)),
            ("m1", "Note 1", "Note number 1: https://x.test/1", "https://x.test/1", NOW - timedelta(minutes=2)),
        ]  # newest first


def test_only_the_recipients_own_item_is_marked_read_when_mark_read_is_called(database: Database) -> None:
    with database.session() as s:
        put(s, "mine", channel="inapp", recipient="7")
        put(s, "theirs", channel="inapp", recipient="8")
        deliver(s, NOW, InAppChannel())
        (mine,) = list_inbox(s, "7")
        (theirs,) = list_inbox(s, "8")

        assert mark_read(s, "7", theirs.id, NOW) is False  # someone else's item: refused, unchanged
        assert mark_read(s, "7", 10_000_000, NOW) is False  # no such item
        assert mark_read(s, "7", mine.id, NOW) is True
        assert mark_read(s, "7", mine.id, NOW + timedelta(hours=1)) is True  # again: no change
        s.commit()

        s.expire_all()
        assert (unread_count(s, "7"), unread_count(s, "8")) == (0, 1)
        assert s.get(InboxItem, mine.id).read_at == NOW  # type: ignore[union-attr]
        assert s.get(InboxItem, theirs.id).read_at is None  # type: ignore[union-attr]
