"""A real SMTP server (aiosmtpd) on 127.0.0.1 for the e-mail tests and the outbox benchmark.

In a test: ``SmtpServer(port).start()`` runs it in a thread; it records every accepted message
(``received``) and counts connections (``connections``). ``refuse(address, "550 5.1.1 …")`` makes
RCPT TO refuse an address with that reply; ``auth=(user, password)`` requires AUTH;
``tls_context=…`` offers STARTTLS (``require_starttls=True`` refuses everything before it).

As its own process (the benchmark, so that the server does not share the client's GIL):
``python -m tests.support.smtp_server PORT`` prints ``ready PORT`` once it listens, counts the
messages it accepts, and when its standard input closes prints ``{"messages": N, "connections": C}``
and exits.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import sys
import threading
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"


def free_port() -> int:
    """A port nothing listens on right now (the kernel's choice, released at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    tls: bool  # whether the session had switched to TLS when the message came
    login: str | None  # the AUTH user, if the client authenticated

    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class RecordingHandler:
    """Accepts every message unless told to refuse a recipient; records what it accepted."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.refused: dict[str, str] = {}  # address -> the reply to RCPT TO
        self._lock = threading.Lock()

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        reply = self.refused.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        content = envelope.original_content or b""
        with self._lock:
            self.received.append(Received(str(envelope.mail_from), tuple(envelope.rcpt_tos), content,
                                          session.ssl is not None, login))
        return "250 Message accepted for delivery"


class _CountingController(Controller):
    """A Controller that counts the connections it serves (aiosmtpd makes one SMTP per connection)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections = 0

    def factory(self) -> SMTP:
        self.connections += 1
        return super().factory()


class SmtpServer:
    """An aiosmtpd server on ``127.0.0.1:port`` in a thread. Start and stop it as often as needed:
    the records survive a restart, which is how the tests bring a server "back"."""

    def __init__(self, port: int | None = None, *, auth: tuple[str, str] | None = None,
                 tls_context: ssl.SSLContext | None = None, require_starttls: bool = False) -> None:
        self.port = port or free_port()
        self.handler = RecordingHandler()
        self.auth = auth
        self.tls_context = tls_context
        self.require_starttls = require_starttls
        self.connections = 0
        self._controller: _CountingController | None = None

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def refuse(self, address: str, reply: str) -> None:
        """Make RCPT TO for ``address`` answer ``reply`` (e.g. ``"550 5.1.1 No such user"``)."""
        self.handler.refused[address] = reply

    def url(self, query: str = "starttls=no") -> str:
        """The ``smtp://`` URL of this server, with credentials when it requires AUTH."""
        user = f"{self.auth[0]}:{self.auth[1]}@" if self.auth else ""
        return f"smtp://{user}{HOST}:{self.port}" + (f"?{query}" if query else "")

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and self.auth is not None
              and (auth_data.login.decode(), auth_data.password.decode()) == self.auth)
        # handled=False: aiosmtpd then replies 535 itself (handled=True would leave the client waiting)
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def start(self) -> SmtpServer:
        assert self._controller is None, "already running"
        kwargs: dict[str, Any] = {"server_hostname": "localhost", "ready_timeout": 10.0}
        if self.auth:
            kwargs.update(authenticator=self._authenticate, auth_required=True,
                          auth_require_tls=self.tls_context is not None)
        if self.tls_context:
            kwargs.update(tls_context=self.tls_context, require_starttls=self.require_starttls)
        controller = _CountingController(self.handler, hostname=HOST, port=self.port, **kwargs)
        controller.start()
        controller.connections = 0  # start() opened one connection of its own to check the server
        self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self.connections += self._controller.connections
            self._controller.stop()
            self._controller = None

    @property
    def connection_count(self) -> int:
        """Connections served so far, over every start."""
        return self.connections + (self._controller.connections if self._controller else 0)

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- TLS ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SelfSigned:
    """A self-signed certificate for 127.0.0.1 and localhost, with its key, as PEM files."""

    cert_pem: bytes
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts this certificate (and only it)."""
        return ssl.create_default_context(cadata=self.cert_pem.decode())


def self_signed(directory: Path) -> SelfSigned:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_file, key_file = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_file.write_bytes(cert_pem)
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return SelfSigned(cert_pem, cert_file, key_file)


# -- as a process (the benchmark) -----------------------------------------------------------------


class _CountingHandler:
    def __init__(self) -> None:
        self.messages = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages += len(envelope.rcpt_tos)
        return "250 Message accepted for delivery"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    port = int(args[0]) if args else free_port()
    handler = _CountingHandler()
    controller = _CountingController(handler, hostname=HOST, port=port, server_hostname="localhost")
    controller.start()
    controller.connections = 0
    print(f"ready {port}", flush=True)
    sys.stdin.read()  # until the parent closes our standard input
    controller.stop()
    print(json.dumps({"messages": handler.messages, "connections": controller.connections}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
