"""Delivery channels behind one small protocol.

``send`` either returns (delivered), raises :class:`TemporaryFailure` (worth retrying: server down,
rate limited, a 4xx SMTP reply) or :class:`PermanentFailure` (never worth retrying: the address is
refused, Notify rejects the request). Anything else a channel raises counts as temporary.
"""

from __future__ import annotations

import hashlib
import logging
import math
import smtplib
import ssl
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Protocol, TextIO
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from notifications.models import InboxItem, OutboxMessage
from notifications.templates import Rendered

log = logging.getLogger(__name__)


class TemporaryFailure(Exception):
    """Worth retrying (server down, rate limited)."""


class PermanentFailure(Exception):
    """Never worth retrying (address rejected, validation error)."""


class Channel(Protocol):
    name: str

    def send(self, session: Session, message: OutboxMessage, rendered: Rendered) -> None:
        """Deliver, or raise TemporaryFailure / PermanentFailure."""
        ...

    def close(self) -> None:
        """Release connections held between messages."""
        ...


def message_id(key: str, domain: str) -> str:
    """A stable Message-ID from the idempotency key: a resent duplicate collapses in mail clients."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}@{domain}>"


class LogChannel:
    """Development default: the message's subject goes to the log (messages never carry identity). A message
    of one of ``console_templates`` carries a secret (a sign-up link): its whole text is written to
    ``console`` (the operator's terminal, standard error of the process) and never to the log, whose
    handlers may keep it in a file."""

    name = "log"

    def __init__(self, console: TextIO | None = None, console_templates: Collection[str] = ()) -> None:
        self.sent: list[tuple[str, Rendered]] = []
        self.console = console
        self.console_templates = frozenset(console_templates)

    def send(self, session: Session, message: OutboxMessage, rendered: Rendered) -> None:
        log.info("message %s to %s: %s", message.idempotency_key, message.recipient, rendered.subject)
        if message.template in self.console_templates:
            if self.console is None:
                raise PermanentFailure("this message holds a link only its recipient may see, and the log channel "
                                       "has no console to show it on: set up an e-mail channel")
            self.console.write(f"\n--- e-mail to {message.recipient}: {rendered.subject} ---\n{rendered.text}"
                               f"\n--- end of e-mail ---\n")
            self.console.flush()
        self.sent.append((message.recipient, rendered))

    def close(self) -> None:
        return None


class InAppChannel:
    """The user's in-app inbox: one row per message, idempotent on the message's key."""

    name = "inapp"

    def send(self, session: Session, message: OutboxMessage, rendered: Rendered) -> None:
        insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        session.execute(insert(InboxItem).values(
            message_key=message.idempotency_key, recipient=message.recipient, template=message.template,
            subject=rendered.subject, body=rendered.text, link=message.context.get("url"),
            created_at=message.created_at, read_at=None,
        ).on_conflict_do_nothing(index_elements=[InboxItem.message_key]))

    def close(self) -> None:
        return None


@dataclass
class SmtpSettings:
    host: str
    port: int
    security: str  # "ssl" | "starttls" (required) | "starttls-auto" (when offered) | "none"
    username: str | None
    password: str | None = field(repr=False)
    timeout: float = 10.0
    # Verifies the server's certificate; None means the system's trust store. Set it to trust a
    # private CA (or, in tests, a self-signed certificate) without turning verification off.
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_url(cls, url: str) -> SmtpSettings:
        """``smtp://user:pass@host:587`` (STARTTLS when the server offers it, or ``?starttls=required``),
        ``smtp://host:25?starttls=no``, or ``smtps://user:pass@host:465`` (TLS from the start)."""
        parts = urlsplit(url.strip())
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError("must start with smtp:// or smtps:// (smtp://user:password@host:587, smtps://host:465)")
        if not parts.hostname:
            raise ValueError("names no host (smtp://user:password@host:587, smtps://host:465)")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if unknown := sorted(set(query) - {"starttls", "timeout"}):
            # A misspelt ?startls=no must not quietly leave the default in place.
            raise ValueError(f"unknown parameter {', '.join(unknown)} (known: starttls, timeout)")
        if parts.scheme == "smtps":
            security = "ssl"
        else:
            starttls = query.get("starttls", "auto").lower()
            if starttls not in ("auto", "required", "no"):
                raise ValueError("starttls must be auto, required or no")
            security = {"auto": "starttls-auto", "required": "starttls", "no": "none"}[starttls]
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port is None:
            port = 465 if parts.scheme == "smtps" else 587
        elif not 0 < port < 65536:
            raise ValueError("the port must be a number from 1 to 65535")
        try:
            timeout = float(query.get("timeout", "10"))
        except ValueError:
            timeout = math.nan
        if not 0 < timeout < math.inf:  # NaN fails this too
            raise ValueError("the timeout must be a number of seconds above 0")
        return cls(parts.hostname, port, security, unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None, timeout)


@dataclass
class SmtpChannel:
    """E-mail over SMTP with smtplib. Keeps one connection across a delivery run."""

    settings: SmtpSettings
    sender: str
    name: str = "smtp"
    _conn: smtplib.SMTP | None = field(default=None, init=False, repr=False)
    _domain: str = field(default="", init=False, repr=False)  # of the sender: Message-IDs end in it

    def __post_init__(self) -> None:
        self._domain = Address(addr_spec=self.sender).domain or "localhost"  # parsed once, not per message

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        context = s.ssl_context or ssl.create_default_context()
        conn: smtplib.SMTP
        if s.security == "ssl":
            conn = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
        else:
            conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        try:
            if s.security != "ssl":
                conn.ehlo()
                if s.security == "starttls" or (s.security == "starttls-auto" and conn.has_extn("starttls")):
                    conn.starttls(context=context)
                    conn.ehlo()
            if s.username:
                conn.login(s.username, s.password or "")
        except BaseException:
            conn.close()  # a half-open connection (TLS or AUTH refused) would otherwise leak its socket
            raise
        return conn

    def send(self, session: Session, message: OutboxMessage, rendered: Rendered) -> None:
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = message.recipient
        email["Subject"] = rendered.subject
        email["Message-ID"] = message_id(message.idempotency_key, self._domain)
        email["Date"] = format_datetime(message.created_at)
        email.set_content(rendered.text)
        email.add_alternative(rendered.html, subtype="html")
        for attempt in (1, 2):
            if self._conn is None:
                try:
                    self._conn = self._connect()
                except (OSError, smtplib.SMTPException) as exc:
                    # Connecting, TLS and AUTH concern the server and our settings, not this message: a
                    # refused login (535) must not fail every queued message for good.
                    s = self.settings
                    raise TemporaryFailure(f"SMTP connection to {s.host}:{s.port}: {type(exc).__name__}: {exc}"
                                           ) from None
            try:
                refused = self._conn.send_message(email)
                if refused:
                    raise PermanentFailure(f"the server refused the recipient: {refused}")
                return
            except smtplib.SMTPServerDisconnected as exc:
                self._conn = None
                if attempt == 2:
                    raise TemporaryFailure(f"SMTP server disconnected: {exc}") from None
            except smtplib.SMTPRecipientsRefused as exc:
                codes = [code for code, _ in exc.recipients.values()]
                self._drop()
                failure = PermanentFailure if all(c >= 500 for c in codes) else TemporaryFailure
                raise failure(f"recipient refused ({', '.join(str(c) for c in codes)})") from None
            except smtplib.SMTPSenderRefused as exc:
                # MAIL FROM refused (530 authentication required, a sender the relay does not accept):
                # our settings, not this message, so every message would fail alike; retry until fixed.
                self._drop()
                raise TemporaryFailure(f"SMTP {exc.smtp_code} for our sender {exc.sender}: {_reply(exc)}") from None
            except smtplib.SMTPResponseException as exc:
                self._drop()
                failure = PermanentFailure if exc.smtp_code >= 500 else TemporaryFailure
                raise failure(f"SMTP {exc.smtp_code}: {_reply(exc)}") from None
            except (OSError, smtplib.SMTPException) as exc:
                self._drop()
                raise TemporaryFailure(f"SMTP: {type(exc).__name__}: {exc}") from None

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                conn.close()

    def close(self) -> None:
        self._drop()


def _reply(exc: smtplib.SMTPResponseException) -> str:
    error: bytes | str = exc.smtp_error
    return error.decode(errors="replace") if isinstance(error, bytes) else error


@dataclass
class NotifyChannel:
    """GOV.UK Notify through the official client. Each of our templates maps to a Notify template
    whose personalisation fields are ``subject``, ``body`` and ``link``."""

    api_key: str
    template_ids: Mapping[str, str]
    base_url: str = "https://api.notifications.service.gov.uk"
    timeout: float = 10.0
    name: str = "notify"
    _client: Any = field(default=None, init=False, repr=False)

    def send(self, session: Session, message: OutboxMessage, rendered: Rendered) -> None:
        from notifications_python_client.errors import HTTPError
        from notifications_python_client.notifications import NotificationsAPIClient
        from requests import RequestException

        template_id = self.template_ids.get(message.template)
        if template_id is None:
            raise PermanentFailure(f"no Notify template id for '{message.template}'")
        if self._client is None:
            self._client = NotificationsAPIClient(  # type: ignore[no-untyped-call]
                self.api_key, base_url=self.base_url, timeout=self.timeout)
        try:
            self._client.send_email_notification(
                email_address=message.recipient, template_id=template_id,
                personalisation={"subject": rendered.subject, "body": rendered.text,
                                 "link": str(message.context.get("url", ""))},
                reference=message.idempotency_key[:1000],
            )
        except HTTPError as exc:
            status = int(getattr(exc, "status_code", 0) or 0)
            detail = "; ".join(str(m.get("message", m)) if isinstance(m, dict) else str(m)
                               for m in (getattr(exc, "message", None) or [])) or str(exc)
            # 401/403 is our API key (revoked, mistyped, clock skew), not this message: like a refused
            # SMTP login it must not fail every queued message for good.
            if status in (401, 403, 429) or status >= 500 or status == 0:
                raise TemporaryFailure(f"Notify {status}: {detail}") from None
            raise PermanentFailure(f"Notify {status}: {detail}") from None
        except RequestException as exc:
            raise TemporaryFailure(f"Notify unreachable: {type(exc).__name__}") from None

    def close(self) -> None:
        return None
