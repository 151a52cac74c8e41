"""E-mail through GOV.UK Notify, end to end: the outbox, the real templates, the official
notifications-python-client and a local server that answers as Notify's e-mail endpoint does."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import jwt
import pytest

from notifications.channels import NotifyChannel
from notifications.models import FAILED, PENDING, SENT
from notifications.outbox import DeliveryResult, list_failed
from reprisals.messaging import SAMPLES
from tests.conftest import Database
from tests.support import outbox
from tests.support.fake_notify import FakeNotify
from tests.support.smtp_server import free_port

NOW = outbox.NOW
TO = outbox.TO
TEMPLATES = outbox.TEMPLATES


@pytest.fixture
def notify() -> Iterator[FakeNotify]:
    with FakeNotify() as server:
        yield server


def channel_for(notify: FakeNotify, template_ids: dict[str, str] | None = None, *, api_key: str | None = None,
                base_url: str | None = None) -> NotifyChannel:
    ids = {"reminder": notify.add_template()} if template_ids is None else template_ids
    return NotifyChannel(api_key or notify.api_key, ids, base_url or notify.base_url, timeout=5.0)


def queue(database: Database, key: str, recipient: str = TO, template: str = "reminder") -> None:
    outbox.queue(database, "notify", key, recipient, template)


deliver, row = outbox.deliver, outbox.row


def test_notify_receives_address_template_and_personalisation_when_message_is_sent(
        database: Database, notify: FakeNotify) -> None:
    queue(database, "reminder:7:1:email")
    channel = channel_for(notify)

    assert deliver(database, channel) == DeliveryResult(sent=1)

    [body] = notify.received
    rendered = TEMPLATES.render("reminder", SAMPLES["reminder"])
    assert body == {
        "email_address": TO, "template_id": channel.template_ids["reminder"], "reference": "reminder:7:1:email",
        "personalisation": {"subject": rendered.subject, "body": rendered.text, "link": SAMPLES["reminder"]["url"]},
    }
    [call] = notify.calls
    token = call.headers["authorization"].removeprefix("Bearer ")
    assert jwt.decode(token, notify.secret, algorithms=["HS256"])["iss"] == notify.service_id
    assert call.headers["user-agent"].startswith("NOTIFY-API-PYTHON-CLIENT/")
    stored = row(database, "reminder:7:1:email")
    assert (stored.status, stored.attempts, stored.sent_at, stored.last_error) == (SENT, 1, NOW, None)


def test_message_fails_for_good_and_is_listed_when_notify_answers_400(database: Database,
                                                                      notify: FakeNotify) -> None:
    queue(database, "bad:1")
    notify.fail_next(400)
    channel = channel_for(notify)

    assert deliver(database, channel) == DeliveryResult(failed=1)

    stored = row(database, "bad:1")
    assert (stored.status, stored.attempts) == (FAILED, 1)
    assert stored.last_error == "Notify 400: Can't send to this recipient using a team-only API key"
    with database.session() as s:
        assert [m.idempotency_key for m in list_failed(s)] == ["bad:1"]
    assert deliver(database, channel, NOW + timedelta(days=1)) == DeliveryResult()
    assert len(notify.calls) == 1
    assert notify.received == []


@pytest.mark.parametrize(("status", "error"), [
    (429, "Notify 429: Exceeded rate limit for key type LIVE of 3000 requests per 60 seconds"),
    (500, "Notify 500: Internal server error"),
])
def test_message_is_retried_with_backoff_then_sent_once_when_notify_recovers_from(
        database: Database, notify: FakeNotify, status: int, error: str) -> None:
    queue(database, "busy:1")
    notify.fail_next(status, times=2)
    channel = channel_for(notify)

    assert deliver(database, channel) == DeliveryResult(retried=1)
    stored = row(database, "busy:1")
    assert (stored.status, stored.attempts, stored.claimed_until) == (PENDING, 1, None)
    assert stored.last_error == f"TemporaryFailure: {error}"
    assert NOW <= stored.next_attempt_at <= NOW + timedelta(seconds=30)  # full jitter up to 30 s after attempt 1

    assert deliver(database, channel, NOW + timedelta(minutes=1)) == DeliveryResult(retried=1)
    stored = row(database, "busy:1")
    assert stored.attempts == 2
    assert NOW + timedelta(minutes=1) <= stored.next_attempt_at <= NOW + timedelta(minutes=2)  # up to 60 s

    assert deliver(database, channel, NOW + timedelta(minutes=5)) == DeliveryResult(sent=1)
    assert deliver(database, channel, NOW + timedelta(hours=1)) == DeliveryResult()
    assert [c.status for c in notify.calls] == [status, status, 201]
    assert len(notify.received) == 1
    assert row(database, "busy:1").status == SENT


def test_message_is_retried_when_notify_cannot_be_reached(database: Database) -> None:
    queue(database, "down:1")
    fake = FakeNotify()  # never started
    channel = NotifyChannel(fake.api_key, {"reminder": fake.add_template()}, f"http://127.0.0.1:{free_port()}",
                            timeout=5.0)

    assert deliver(database, channel) == DeliveryResult(retried=1)
    stored = row(database, "down:1")
    assert (stored.status, stored.attempts) == (PENDING, 1)
    assert "Notify 503" in (stored.last_error or "")  # how the client reports a connection error


def test_message_is_retried_not_failed_when_notify_refuses_our_api_key(database: Database,
                                                                       notify: FakeNotify) -> None:
    queue(database, "key:1")
    wrong_key = f"reprisals_test-{notify.service_id}-{uuid.uuid4()}"

    assert deliver(database, channel_for(notify, api_key=wrong_key)) == DeliveryResult(retried=1)
    stored = row(database, "key:1")
    assert stored.status == PENDING  # our settings are wrong, not the message: fix them and it goes
    assert "Notify 403: Invalid token" in (stored.last_error or "")
    assert notify.received == []


def test_message_fails_with_a_clear_error_when_its_template_has_no_notify_template_id(
        database: Database, notify: FakeNotify) -> None:
    queue(database, "overdue:7:1:email", template="overdue")

    assert deliver(database, channel_for(notify)) == DeliveryResult(failed=1)  # only "reminder" is mapped

    stored = row(database, "overdue:7:1:email")
    assert (stored.status, stored.last_error) == (FAILED, "no Notify template id for 'overdue'")
    assert notify.calls == []
