"""The outbox on a real database (SQLite and PostgreSQL): enqueue once per key, deliver in order,
retry with backoff until the limit and then fail visibly, re-send a message whose sender died once
its lease expires, and the in-app inbox.

The channel here is a recording fake of our own ``Channel`` port (the real SMTP and Notify channels
have their own tests); the templates are this package's own, not the domain's: ``notifications``
knows nothing of cases.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jinja2
import pytest
from sqlalchemy import Connection, event, select
from sqlalchemy.orm import Session, sessionmaker

from notifications import outbox as outbox_module
from notifications.channels import InAppChannel, PermanentFailure, TemporaryFailure
from notifications.models import FAILED, PENDING, SENDING, SENT, InboxItem, OutboxMessage, metadata
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
from workflow.db import create_db_engine

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


# -- a commit per batch ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("messages", "batch", "commits"), [
    (5, 1, 6),  # five claims, four of them with the previous outcome; the last outcome alone
    (25, 10, 4),  # claim 10; their outcomes + claim 10; outcomes + claim 5; the last 5 outcomes alone
])
def test_outcomes_commit_with_the_next_claim_and_the_last_alone_when_a_run_delivers_several(
        database: Database, messages: int, batch: int, commits: int) -> None:
    with database.session() as s:
        for i in range(messages):
            put(s, f"k{i}", n=i, now=NOW - timedelta(minutes=100 - i))
        seen: list[int] = []
        event.listen(s, "after_commit", lambda _s: seen.append(1))
        mail = Recording()

        result = deliver_due(s, NOW, {"mail": mail}, TEMPLATES, batch=batch)

        assert result.sent == messages
        assert len(seen) == commits
        assert [key for key, _, _ in mail.sent] == [f"k{i}" for i in range(messages)]  # oldest first
        for i in range(messages):
            m = row(s, f"k{i}")
            assert (m.status, m.attempts, m.sent_at, m.claimed_until) == (SENT, 1, NOW, None)


class Observer:
    """A channel that, while sending each message, reads the outbox from a connection of its own: what
    another process would see at that moment."""

    name = "mail"

    def __init__(self, database: Database, pause: float = 0.0) -> None:
        self.database, self.pause = database, pause
        self.seen: list[tuple[str, datetime | None, dict[str, str]]] = []  # (key, its lease, statuses)

    def send(self, session: Session, message: OutboxMessage, rendered: Rendered) -> None:
        with self.database.engine.connect() as conn:
            statuses = dict(conn.execute(select(OutboxMessage.idempotency_key, OutboxMessage.status)).all())
        self.seen.append((message.idempotency_key, message.claimed_until, statuses))
        time.sleep(self.pause)

    def close(self) -> None:
        return None


def test_a_batch_is_claimed_together_and_its_outcomes_wait_for_the_next_commit_when_sends_are_quick(
        database: Database) -> None:
    with database.session() as s:
        for key in "abc":
            put(s, key)
        observer = Observer(database)

        deliver_due(s, NOW, {"mail": observer}, TEMPLATES, batch=10)

    # While c is sent, all three are claimed and none is recorded yet (one commit will record them).
    assert observer.seen[-1][2] == {"a": SENDING, "b": SENDING, "c": SENDING}
    with database.session() as s:
        assert [row(s, k).status for k in "abc"] == [SENT] * 3


def test_outcomes_are_committed_within_the_window_when_sends_are_slow(
        database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox_module, "OUTCOME_WINDOW", 0.05)  # 0.5 s in production
    with database.session() as s:
        for key in "abc":
            put(s, key)
        observer = Observer(database, pause=0.06)  # each send outlasts the window

        deliver_due(s, NOW, {"mail": observer}, TEMPLATES, batch=10)

    # A crash now would resend only the message in flight: each earlier one is already recorded.
    assert [statuses for _, _, statuses in observer.seen] == [
        {"a": SENDING, "b": SENDING, "c": SENDING},
        {"a": SENT, "b": SENDING, "c": SENDING},
        {"a": SENT, "b": SENT, "c": SENDING},
    ]


def test_unsent_claims_are_given_back_and_claimed_anew_when_half_their_lease_has_run_out(
        database: Database) -> None:
    lease = timedelta(seconds=2)
    with database.session() as s:
        for i, key in enumerate("abc"):
            put(s, key, now=NOW - timedelta(minutes=3 - i))
        observer = Observer(database, pause=0.6)  # a slow server: after two sends, over half the lease

        result = deliver_due(s, NOW, {"mail": observer}, TEMPLATES, batch=10, lease=lease)

        assert result.sent == 3
        # a and b went on the first claim; c's was given back and c claimed again, its lease counted
        # from then (whole seconds into the run), not from the run's start.
        assert [(key, until) for key, until, _ in observer.seen] == [
            ("a", NOW + lease), ("b", NOW + lease), ("c", NOW + timedelta(seconds=1) + lease)]
        assert observer.seen[2][2] == {"a": SENT, "b": SENT, "c": SENDING}
        assert [(row(s, k).status, row(s, k).attempts) for k in "abc"] == [(SENT, 1)] * 3  # no attempt lost


class CommitFails:
    """The database refuses the n-th commit of a session once (a full disk, say)."""

    def __init__(self, session: Session, n: int) -> None:
        self.n, self.count = n, 0
        event.listen(session, "before_commit", self)

    def __call__(self, _session: Session) -> None:
        self.count += 1
        if self.count == self.n:
            raise RuntimeError("disk I/O error")


@pytest.mark.parametrize("batch", [1, 2])
def test_sent_messages_are_recorded_and_the_next_stays_due_when_the_commit_claiming_the_next_fails(
        database: Database, batch: int) -> None:
    sent = ["first", "second"][:batch]  # what the first claim took and the run sent
    with database.session() as s:
        for i, key in enumerate(["first", "second", "third"]):
            put(s, key, now=NOW - timedelta(minutes=3 - i))
    mail = Recording()
    with database.session() as s:
        CommitFails(s, 2)  # the first claim commits; the commit of its outcomes with the next claim fails
        with pytest.raises(RuntimeError, match="disk I/O error"):
            deliver_due(s, NOW, {"mail": mail}, TEMPLATES, batch=batch)

    with database.session() as s:
        for key in sent:  # recorded on their own: not sent again
            assert (row(s, key).status, row(s, key).claimed_until) == (SENT, None)
        for key in ["first", "second", "third"][batch:]:
            assert (row(s, key).status, row(s, key).attempts) == (PENDING, 0)
        assert deliver(s, NOW + timedelta(days=1), mail).sent == 3 - batch
    assert [key for key, _, _ in mail.sent] == ["first", "second", "third"]


def test_an_unsent_claim_is_given_back_not_left_to_its_lease_when_a_commit_fails_mid_batch(
        database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox_module, "OUTCOME_WINDOW", 0.0)  # each outcome committed at once
    with database.session() as s:
        for i, key in enumerate(["first", "second"]):
            put(s, key, now=NOW - timedelta(minutes=2 - i))
    mail = Recording()
    with database.session() as s:
        CommitFails(s, 2)  # claim both; the commit of first's outcome fails
        with pytest.raises(RuntimeError, match="disk I/O error"):
            deliver_due(s, NOW, {"mail": mail}, TEMPLATES, batch=2)

    with database.session() as s:
        assert (row(s, "first").status, row(s, "first").attempts) == (SENT, 1)
        second = row(s, "second")
        assert (second.status, second.attempts, second.claimed_until) == (PENDING, 0, None)  # due now
        assert deliver(s, NOW, mail).sent == 1
    assert [key for key, _, _ in mail.sent] == ["first", "second"]


def test_a_run_refuses_a_batch_below_one_and_changes_nothing(database: Database) -> None:
    with database.session() as s:
        put(s, "k")
        with pytest.raises(ValueError, match="at least one message"):
            deliver_due(s, NOW, {"mail": Recording()}, TEMPLATES, batch=0)
        assert (row(s, "k").status, row(s, "k").attempts) == (PENDING, 0)


def test_an_inapp_message_waits_for_its_lease_and_gets_one_item_when_the_commit_after_it_fails(
        database: Database) -> None:
    lease = timedelta(minutes=5)
    with database.session() as s:
        put(s, "first", channel="inapp", recipient="7", now=NOW - timedelta(minutes=2))
        put(s, "second", channel="inapp", recipient="7", now=NOW - timedelta(minutes=1))
    with database.session() as s:
        CommitFails(s, 2)  # the inbox row and the outcome share that commit: neither may land alone
        with pytest.raises(RuntimeError):
            deliver(s, NOW, InAppChannel(), lease=lease)

    with database.session() as s:
        assert (row(s, "first").status, list_inbox(s, "7")) == (SENDING, [])
        assert deliver(s, NOW + lease - timedelta(seconds=1), InAppChannel(), lease=lease).sent == 1  # second
        assert deliver(s, NOW + lease, InAppChannel(), lease=lease).sent == 1  # first, its lease expired
        assert sorted(i.message_key for i in list_inbox(s, "7")) == ["first", "second"]
        assert (row(s, "first").status, row(s, "first").attempts) == (SENT, 2)


def test_delivery_commits_do_not_wait_for_the_disk_and_other_transactions_still_do_on_sqlite(
        tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'outbox.db'}", pool_size=1, max_overflow=0)
    metadata.create_all(engine)
    levels: list[int] = []  # PRAGMA synchronous at each commit: 2 FULL, 1 NORMAL

    @event.listens_for(engine, "commit")
    def _level(conn: Connection) -> None:
        levels.append(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())

    sessions = sessionmaker(engine, expire_on_commit=False)
    with sessions() as s:
        put(s, "k")  # an ordinary transaction
        levels.clear()
        assert deliver(s, NOW, Recording()).sent == 1
        assert levels == [1, 1]  # the claim, then the outcome
        levels.clear()
        put(s, "k2")  # the same pooled connection, an ordinary transaction again
        assert levels == [2]
    engine.dispose()


@pytest.mark.postgresql_only
def test_delivery_commits_do_not_wait_for_the_wal_flush_and_other_transactions_still_do_on_postgresql(
        database: Database) -> None:
    levels: list[str] = []  # synchronous_commit at each commit

    @event.listens_for(database.engine, "commit")
    def _level(conn: Connection) -> None:
        levels.append(conn.exec_driver_sql("SHOW synchronous_commit").scalar_one())

    try:
        with database.session() as s:
            put(s, "k")  # an ordinary transaction
            put(s, "k2")
            assert levels == ["on", "on"]
            levels.clear()
            assert deliver_due(s, NOW, {"mail": Recording()}, TEMPLATES, batch=1).sent == 2
            assert levels == ["off", "off", "off"]  # claim, outcome with the next claim, the last outcome
            levels.clear()
            put(s, "k3")  # SET LOCAL ended with its transaction
            assert levels == ["on"]
    finally:
        event.remove(database.engine, "commit", _level)


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
