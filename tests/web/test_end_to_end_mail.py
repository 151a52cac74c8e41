"""The whole path of a reminder, for real: a case opened and referred through the services, the clock
moved to the reminder's time, the scheduler's sweep and delivery run, and the e-mail received by a
real SMTP server (aiosmtpd on 127.0.0.1) as well as put in the person's in-app inbox. Only the clock
is a fake (a FrozenClock in the Runtime): everything else is what production runs.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select

from notifications.models import OutboxMessage
from notifications.outbox import list_inbox, unread_count
from reprisals.config import load_settings
from reprisals.models import Role
from reprisals.runtime import Runtime
from reprisals.services import advance_case, open_case
from tests.conftest import Database
from tests.factories import (
    CANARY_DESCRIPTION,
    CANARY_DOB,
    CANARY_NAME,
    CANARY_NUMBER,
    CONSENT,
    REFER,
    case_data,
    make_establishment,
    make_user,
)
from tests.web.conftest import base_env
from web.scheduler import build_channels, run_delivery, run_sweep
from workflow.clock import FrozenClock

LONDON = ZoneInfo("Europe/London")
BASE_URL = "https://reprisals.example.test"
MAIL_FROM = "reminders@reprisals.example.test"
CANARIES = [CANARY_NAME, "Zebediah", "Canarywhistle", CANARY_NUMBER, CANARY_DOB, "1987", CANARY_DESCRIPTION,
            "CANARYTEXT42", "HMP Thornbury Fen"]


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=LONDON)


@dataclass
class Collecting:
    """An aiosmtpd handler that keeps every envelope it accepts."""

    envelopes: list[Envelope]
    lock: threading.Lock

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Collecting, int]]:
    with socket.socket() as s:  # a port free right now (aiosmtpd checks its own start on the given port)
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    handler = Collecting([], threading.Lock())
    # server_hostname: no reverse DNS lookup of this machine's name on start.
    controller = Controller(handler, hostname="127.0.0.1", port=port, server_hostname="localhost", ready_timeout=10)
    controller.start()
    yield handler, port
    controller.stop()


def test_reminder_arrives_by_email_and_in_the_inbox_without_identity_when_its_time_comes(
        database: Database, tmp_path: Path, smtp_server: tuple[Collecting, int]) -> None:
    server, port = smtp_server
    settings = load_settings({**base_env(database.url, tmp_path), "REPRISALS_EMAIL_CHANNEL": "smtp",
                              "REPRISALS_SMTP_URL": f"smtp://127.0.0.1:{port}?starttls=no",
                              "REPRISALS_BASE_URL": BASE_URL, "REPRISALS_MAIL_FROM": MAIL_FROM}, dotenv=None)
    clock = FrozenClock(local("2025-04-16 10:30"))
    rt = Runtime.from_settings(settings, clock=clock)
    try:
        # The worked example: IMB opens the case on Wed 16 Apr 2025 and refers it on Thu 17 Apr.
        with rt.transaction() as s:
            lead = make_user(s, role=Role.LEAD, body="IMB")
            staff = make_user(s, role=Role.STAFF, body="IMB")
            case = open_case(s, rt.engine, rt.cipher, staff, clock.now(),
                             case_data(make_establishment(s, name="HMP Thornbury Fen")))
            clock.set(local("2025-04-16 11:00"))
            advance_case(s, rt.engine, lead, case, "record_consent_and_risk", CONSENT, clock.now())
            clock.set(local("2025-04-17 14:00"))
            advance_case(s, rt.engine, lead, case, "refer", REFER, clock.now())
            reference, staff_id, staff_email = case.reference, staff.id, staff.email
        assert run_sweep(rt).fired == 0  # nothing is due yet
        assert run_delivery(rt, build_channels(rt.settings)).sent == 0

        clock.set(local("2025-04-30 09:00"))  # the reminder: 3 working days before Tue 6 May
        assert run_sweep(rt).fired == 1
        delivered = run_delivery(rt, build_channels(rt.settings))

        assert (delivered.sent, delivered.retried, delivered.failed) == (2, 0, 0)  # the inbox and the e-mail
        (envelope,) = server.envelopes
        assert (envelope.mail_from, envelope.rcpt_tos) == (MAIL_FROM, [staff_email])
        raw = envelope.original_content or b""
        mail = message_from_bytes(raw, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        assert mail["To"] == staff_email
        assert mail["Subject"] == f"Case {reference}: establishment response due Tue 6 May 2025, 17:00"
        link = f"{BASE_URL}/cases/{reference}"
        text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert link in text and f'href="{link}"' in html
        for part in (raw.decode("utf-8", "replace"), str(mail["Subject"]), text, html):
            for canary in CANARIES:
                assert canary.lower() not in part.lower(), canary

        with rt.sessions() as s:
            assert unread_count(s, str(staff_id)) == 1
            assert unread_count(s, str(lead.id)) == 0  # a reminder goes to the assigned staff only
            (item,) = list_inbox(s, str(staff_id))
            assert (item.subject, item.link) == (mail["Subject"], link)
            assert {(m.channel, m.status) for m in s.scalars(select(OutboxMessage))} == {
                ("inapp", "sent"), ("smtp", "sent")}

        assert run_delivery(rt, build_channels(rt.settings)).sent == 0  # nothing twice
        assert len(server.envelopes) == 1
    finally:
        rt.close()
