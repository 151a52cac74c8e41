"""E-mail over SMTP, end to end: the outbox, the real templates and a real SMTP server (aiosmtpd) on
127.0.0.1 — plain, with AUTH, and with STARTTLS on a self-signed certificate made per test."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from notifications.channels import SmtpChannel, SmtpSettings, message_id
from notifications.models import FAILED, PENDING, SENDING, SENT, OutboxMessage
from notifications.outbox import DEFAULT_LEASE, DeliveryResult, deliver_due, list_failed
from notifications.templates import Rendered
from reprisals.messaging import SAMPLES
from tests.conftest import Database
from tests.support import outbox
from tests.support.smtp_server import SelfSigned, SmtpServer, self_signed

NOW = outbox.NOW
SENDER = "reprisals@reprisals.example"
TO = outbox.TO
TEMPLATES = outbox.TEMPLATES


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as s:
        yield s


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> SelfSigned:
    return self_signed(tmp_path_factory.mktemp("tls"))


def channel_for(url: str, **changes: object) -> SmtpChannel:
    settings = dataclasses.replace(SmtpSettings.from_url(url), timeout=5.0)
    return SmtpChannel(dataclasses.replace(settings, **changes), SENDER)


def queue(database: Database, key: str, recipient: str = TO, template: str = "reminder") -> None:
    outbox.queue(database, "smtp", key, recipient, template)


deliver, row = outbox.deliver, outbox.row


# -- delivery ---------------------------------------------------------------------------------------


def test_reminder_arrives_with_recipient_subject_parts_link_and_stable_message_id_when_delivered(
        database: Database, server: SmtpServer) -> None:
    queue(database, "reminder:7:1:email")

    result = deliver(database, channel_for(server.url()))

    assert result == DeliveryResult(sent=1)
    [received] = server.received
    assert received.mail_from == SENDER
    assert received.rcpt_tos == (TO,)
    email = received.message()
    rendered = TEMPLATES.render("reminder", SAMPLES["reminder"])
    assert email["To"] == TO
    assert email["From"] == SENDER
    assert email["Subject"] == rendered.subject
    assert rendered.subject == "Case RPR-2026-0042: establishment response due Tue 6 May 2026, 17:00"
    assert email["Message-ID"] == message_id("reminder:7:1:email", "reprisals.example")
    assert email.get_content_type() == "multipart/alternative"
    text, html = email.get_body(("plain",)), email.get_body(("html",))
    assert text is not None and html is not None
    link = SAMPLES["reminder"]["url"]
    assert f"Open the case: {link}" in text.get_content()
    assert f'<a href="{link}">' in html.get_content()
    stored = row(database, "reminder:7:1:email")
    assert (stored.status, stored.attempts, stored.sent_at, stored.last_error, stored.claimed_until) == (
        SENT, 1, NOW, None, None)


def test_message_id_differs_only_when_idempotency_key_differs() -> None:
    assert message_id("a:1", "x.example") == message_id("a:1", "x.example")
    assert message_id("a:1", "x.example") != message_id("a:2", "x.example")
    assert message_id("a:1", "x.example").endswith("@x.example>")


def test_one_connection_carries_every_message_when_a_run_delivers_many(database: Database,
                                                                       server: SmtpServer) -> None:
    for i in range(25):
        queue(database, f"many:{i}", recipient=f"person{i}@body.example")

    result = deliver(database, channel_for(server.url()))

    assert result == DeliveryResult(sent=25)
    assert sorted(r.rcpt_tos[0] for r in server.received) == sorted(f"person{i}@body.example" for i in range(25))
    assert server.connection_count == 1


def test_message_goes_on_a_new_connection_when_server_dropped_the_kept_one(server: SmtpServer) -> None:
    channel = channel_for(server.url())
    rendered = TEMPLATES.render("reminder", SAMPLES["reminder"])
    first, second = (OutboxMessage(idempotency_key=f"drop:{i}", channel="smtp", recipient=TO, template="reminder",
                                   context=SAMPLES["reminder"], created_at=NOW) for i in (1, 2))
    with Session() as unused:
        channel.send(unused, first, rendered)
        server.stop()  # drops the kept connection, as an idle timeout on the server would
        server.start()
        channel.send(unused, second, rendered)
    channel.close()

    assert [r.message()["Message-ID"] for r in server.received] == [
        message_id("drop:1", "reprisals.example"), message_id("drop:2", "reprisals.example")]
    assert server.connection_count == 2


def test_each_message_is_sent_once_when_two_senders_run_at_once(database: Database, server: SmtpServer) -> None:
    for i in range(60):
        queue(database, f"race:{i}", recipient=f"person{i}@body.example")
    start = threading.Barrier(2)
    results: list[DeliveryResult] = []

    def sender() -> None:
        channel = channel_for(server.url())
        with database.session() as s:
            start.wait(timeout=10)
            results.append(deliver_due(s, NOW, {"smtp": channel}, TEMPLATES))

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert sum(r.sent for r in results) == 60 and len(results) == 2
    ids = [r.message()["Message-ID"] for r in server.received]
    assert sorted(ids) == sorted(message_id(f"race:{i}", "reprisals.example") for i in range(60))
    with database.session() as s:
        assert set(s.execute(select(OutboxMessage.status, OutboxMessage.attempts))) == {(SENT, 1)}


# -- failures ---------------------------------------------------------------------------------------


def test_message_is_retried_with_backoff_then_delivered_once_when_server_was_down_and_comes_back(
        database: Database) -> None:
    server = SmtpServer()  # not started: nothing listens on its port
    queue(database, "down:1")
    channel = channel_for(server.url())

    assert deliver(database, channel) == DeliveryResult(retried=1)
    stored = row(database, "down:1")
    assert (stored.status, stored.attempts, stored.claimed_until) == (PENDING, 1, None)
    assert "ConnectionRefusedError" in (stored.last_error or "")
    assert NOW <= stored.next_attempt_at <= NOW + timedelta(seconds=30)  # first backoff: full jitter up to 30 s

    with server:
        assert deliver(database, channel, NOW + timedelta(minutes=1)) == DeliveryResult(sent=1)
        assert deliver(database, channel, NOW + timedelta(hours=1)) == DeliveryResult()
    assert len(server.received) == 1
    stored = row(database, "down:1")
    assert (stored.status, stored.attempts, stored.last_error) == (SENT, 2, None)


def test_message_fails_for_good_and_is_listed_when_server_refuses_recipient_with_550(
        database: Database, server: SmtpServer) -> None:
    server.refuse("gone@body.example", "550 5.1.1 No such user here")
    queue(database, "refused:1", recipient="gone@body.example")
    queue(database, "refused:2")

    result = deliver(database, channel_for(server.url()))

    assert result == DeliveryResult(sent=1, failed=1)  # the refusal does not hold up the rest of the run
    stored = row(database, "refused:1")
    assert (stored.status, stored.attempts, stored.claimed_until) == (FAILED, 1, None)
    assert "550" in (stored.last_error or "")
    with database.session() as s:
        assert [m.idempotency_key for m in list_failed(s)] == ["refused:1"]
    assert deliver(database, channel_for(server.url()), NOW + timedelta(days=1)) == DeliveryResult()
    assert [r.rcpt_tos for r in server.received] == [(TO,)]


def test_message_is_retried_when_server_refuses_recipient_with_451(database: Database, server: SmtpServer) -> None:
    server.refuse(TO, "451 4.3.0 Mailbox temporarily unavailable")
    queue(database, "busy:1")

    assert deliver(database, channel_for(server.url())) == DeliveryResult(retried=1)
    stored = row(database, "busy:1")
    assert (stored.status, stored.attempts) == (PENDING, 1)
    assert "451" in (stored.last_error or "")

    server.handler.refused.clear()
    assert deliver(database, channel_for(server.url()), NOW + timedelta(hours=1)) == DeliveryResult(sent=1)
    assert len(server.received) == 1


def test_message_ends_failed_when_temporary_failures_reach_max_attempts(database: Database) -> None:
    server = SmtpServer()  # never started
    queue(database, "never:1")
    channel = channel_for(server.url())
    with database.session() as s:
        for hour in range(3):
            deliver_due(s, NOW + timedelta(hours=hour), {"smtp": channel}, TEMPLATES, max_attempts=3)

    stored = row(database, "never:1")
    assert (stored.status, stored.attempts) == (FAILED, 3)
    assert "ConnectionRefusedError" in (stored.last_error or "")


class Died(BaseException):
    """The delivering process was killed."""


@dataclasses.dataclass
class DiesAfterSending:
    """The real channel; once it has sent, the next commit (the one recording the outcome) kills the process."""

    channel: SmtpChannel
    name: str = "smtp"
    sent: bool = False

    def send(self, session: Session, message: OutboxMessage, rendered: Rendered) -> None:
        self.channel.send(session, message, rendered)
        self.sent = True

    def close(self) -> None:
        self.channel.close()

    def before_commit(self, session: Session) -> None:
        if self.sent:
            raise Died


def test_message_is_sent_again_once_with_same_message_id_when_sender_died_before_recording_it(
        database: Database, server: SmtpServer) -> None:
    queue(database, "crash:1")

    dying = DiesAfterSending(channel_for(server.url()))
    with database.session() as s:
        event.listen(s, "before_commit", dying.before_commit)
        with pytest.raises(Died):
            deliver_due(s, NOW, {"smtp": dying}, TEMPLATES)

    assert len(server.received) == 1  # the server has it; the outbox does not know
    assert row(database, "crash:1").status == SENDING
    # While the dead sender's lease runs, nobody else sends it.
    assert deliver(database, channel_for(server.url()), NOW + DEFAULT_LEASE - timedelta(seconds=1)) == DeliveryResult()
    assert len(server.received) == 1

    assert deliver(database, channel_for(server.url()), NOW + DEFAULT_LEASE) == DeliveryResult(sent=1)
    assert deliver(database, channel_for(server.url()), NOW + 3 * DEFAULT_LEASE) == DeliveryResult()

    ids = [r.message()["Message-ID"] for r in server.received]
    assert ids == [message_id("crash:1", "reprisals.example")] * 2
    stored = row(database, "crash:1")
    assert (stored.status, stored.attempts) == (SENT, 2)


def test_only_the_sent_message_goes_again_when_sender_died_at_the_commit_claiming_the_next(
        database: Database, server: SmtpServer) -> None:
    queue(database, "crash:1")
    queue(database, "crash:2")

    dying = DiesAfterSending(channel_for(server.url()))  # its first commit after a send records crash:1
    with database.session() as s:  # and claims crash:2: that is the one it dies in
        event.listen(s, "before_commit", dying.before_commit)
        with pytest.raises(Died):
            deliver_due(s, NOW, {"smtp": dying}, TEMPLATES, batch=1)

    assert len(server.received) == 1
    assert (row(database, "crash:1").status, row(database, "crash:2").status) == (SENDING, PENDING)
    assert row(database, "crash:2").attempts == 0
    # crash:2 was never claimed: the next run sends it; crash:1 waits for its lease.
    assert deliver(database, channel_for(server.url()), NOW + timedelta(seconds=1)) == DeliveryResult(sent=1)
    assert deliver(database, channel_for(server.url()), NOW + DEFAULT_LEASE) == DeliveryResult(sent=1)
    assert deliver(database, channel_for(server.url()), NOW + 3 * DEFAULT_LEASE) == DeliveryResult()

    ids = [r.message()["Message-ID"] for r in server.received]
    first, second = message_id("crash:1", "reprisals.example"), message_id("crash:2", "reprisals.example")
    assert ids == [first, second, first]  # crash:1 twice, the same Message-ID; crash:2 once
    assert [(row(database, k).status, row(database, k).attempts) for k in ("crash:1", "crash:2")] == [
        (SENT, 2), (SENT, 1)]


def test_each_sent_message_of_a_batch_goes_again_once_when_sender_died_at_the_commit_recording_them(
        database: Database, server: SmtpServer) -> None:
    for key in ("crash:1", "crash:2", "crash:3"):
        queue(database, key)

    dying = DiesAfterSending(channel_for(server.url()))  # claims 1 and 2, sends both, then dies in the
    with database.session() as s:  # commit that records them and claims crash:3
        event.listen(s, "before_commit", dying.before_commit)
        with pytest.raises(Died):
            deliver_due(s, NOW, {"smtp": dying}, TEMPLATES, batch=2)

    assert len(server.received) == 2
    assert [(row(database, k).status, row(database, k).attempts) for k in ("crash:1", "crash:2", "crash:3")] == [
        (SENDING, 1), (SENDING, 1), (PENDING, 0)]
    # crash:3 was never claimed: the next run sends it; 1 and 2 wait for their lease, then go once more.
    assert deliver(database, channel_for(server.url()), NOW + timedelta(seconds=1)) == DeliveryResult(sent=1)
    assert deliver(database, channel_for(server.url()), NOW + DEFAULT_LEASE) == DeliveryResult(sent=2)
    assert deliver(database, channel_for(server.url()), NOW + 3 * DEFAULT_LEASE) == DeliveryResult()

    one, two, three = (message_id(f"crash:{i}", "reprisals.example") for i in (1, 2, 3))
    assert [r.message()["Message-ID"] for r in server.received] == [one, two, three, one, two]
    assert [(row(database, k).status, row(database, k).attempts) for k in ("crash:1", "crash:2", "crash:3")] == [
        (SENT, 2), (SENT, 2), (SENT, 1)]


# -- AUTH and TLS -----------------------------------------------------------------------------------


def test_message_is_sent_after_login_when_server_requires_auth(database: Database, cert: SelfSigned) -> None:
    queue(database, "auth:1")
    with SmtpServer(auth=("mailer", "s3cret p@ss"), tls_context=cert.server_context(), require_starttls=True) as server:
        url = server.url("starttls=required").replace("s3cret p@ss", "s3cret%20p%40ss")
        assert deliver(database, channel_for(url, ssl_context=cert.client_context())) == DeliveryResult(sent=1)
    [received] = server.received
    assert (received.tls, received.login) == (True, "mailer")


def test_message_is_retried_not_failed_when_server_refuses_the_login(database: Database, cert: SelfSigned) -> None:
    queue(database, "auth:2")
    with SmtpServer(auth=("mailer", "right"), tls_context=cert.server_context(), require_starttls=True) as server:
        url = server.url("starttls=required").replace(":right@", ":wrong@")
        result = deliver(database, channel_for(url, ssl_context=cert.client_context()))
    assert result == DeliveryResult(retried=1)  # our settings are wrong, not the message: fix them and it goes
    stored = row(database, "auth:2")
    assert stored.status == PENDING
    assert "535" in (stored.last_error or "")
    assert server.received == []


def test_nothing_is_sent_when_server_requires_auth_and_no_credentials_are_set(database: Database,
                                                                               cert: SelfSigned) -> None:
    queue(database, "auth:3")
    with SmtpServer(auth=("mailer", "pw"), tls_context=cert.server_context(), require_starttls=True) as server:
        result = deliver(database, channel_for(server.url("starttls=required").replace("mailer:pw@", ""),
                                               ssl_context=cert.client_context()))
    assert result == DeliveryResult(retried=1)
    assert "530" in (row(database, "auth:3").last_error or "")
    assert server.received == []


def test_message_travels_encrypted_when_server_offers_starttls_with_a_trusted_certificate(
        database: Database, cert: SelfSigned) -> None:
    queue(database, "tls:1")
    with SmtpServer(tls_context=cert.server_context()) as server:  # offered, not required by the server
        channel = channel_for(server.url(""), ssl_context=cert.client_context())  # the default: STARTTLS if offered
        assert deliver(database, channel) == DeliveryResult(sent=1)
    assert [r.tls for r in server.received] == [True]


def test_nothing_is_sent_when_server_certificate_is_not_trusted(database: Database, cert: SelfSigned) -> None:
    queue(database, "tls:2")
    with SmtpServer(tls_context=cert.server_context(), require_starttls=True) as server:
        result = deliver(database, channel_for(server.url("starttls=required")))  # the system's trust store
    assert result == DeliveryResult(retried=1)
    assert "CERTIFICATE_VERIFY_FAILED" in (row(database, "tls:2").last_error or "")
    assert server.received == []


def test_nothing_is_sent_in_clear_when_starttls_is_required_but_not_offered(database: Database,
                                                                            server: SmtpServer) -> None:
    queue(database, "tls:3")
    result = deliver(database, channel_for(server.url("starttls=required")))
    assert result == DeliveryResult(retried=1)
    assert "STARTTLS" in (row(database, "tls:3").last_error or "")
    assert server.received == []


# -- settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "expected"), [
    ("smtp://mailer:p%40ss%2Fword@mail.example:587",
     ("mail.example", 587, "starttls-auto", "mailer", "p@ss/word", 10.0)),
    ("smtp://mail.example", ("mail.example", 587, "starttls-auto", None, None, 10.0)),
    ("smtp://mail.example:25?starttls=no", ("mail.example", 25, "none", None, None, 10.0)),
    ("smtp://mail.example?starttls=REQUIRED&timeout=2.5", ("mail.example", 587, "starttls", None, None, 2.5)),
    ("smtps://mailer:pw@mail.example", ("mail.example", 465, "ssl", "mailer", "pw", 10.0)),
    ("smtps://mail.example:2465", ("mail.example", 2465, "ssl", None, None, 10.0)),
])
def test_settings_are_read_when_url_is_valid(url: str, expected: tuple[object, ...]) -> None:
    s = SmtpSettings.from_url(url)
    assert (s.host, s.port, s.security, s.username, s.password, s.timeout) == expected
    assert s.ssl_context is None


def test_password_stays_out_of_repr_when_settings_are_logged() -> None:
    settings = SmtpSettings.from_url("smtp://mailer:hunter2@mail.example")
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in repr(SmtpChannel(settings, SENDER))


@pytest.mark.parametrize(("url", "fragment"), [
    ("mail.example:25", "must start with smtp:// or smtps://"),
    ("http://mail.example", "must start with smtp:// or smtps://"),
    ("smtp://", "names no host"),
    ("smtp://mail.example?starttls=yes", "starttls must be auto, required or no"),
    ("smtp://mail.example?startls=no", "unknown parameter startls"),
    ("smtp://mail.example:smtp", "the port must be a number from 1 to 65535"),
    ("smtp://mail.example:70000", "the port must be a number from 1 to 65535"),
    ("smtp://mail.example:0", "the port must be a number from 1 to 65535"),
    ("smtp://mail.example?timeout=soon", "the timeout must be a number of seconds above 0"),
    ("smtp://mail.example?timeout=0", "the timeout must be a number of seconds above 0"),
    ("smtp://mail.example?timeout=nan", "the timeout must be a number of seconds above 0"),
])
def test_settings_are_refused_with_a_reason_when_url_is_invalid(url: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment.replace("?", r"\?")):
        SmtpSettings.from_url(url)

