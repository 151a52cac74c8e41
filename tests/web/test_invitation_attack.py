"""No path from administration to identity (issue 12), tried as the attacker would, through the pages.

An admin invites a "lead" of the owning body with an address they hold, hoping to read the link on their
own screen, sign in as that lead and read who the person is. The link is only in the invitee's e-mail
(received by a real SMTP server on loopback), never on the admin's pages nor in the log; the account, once
its password is chosen, is pending: it sees no case and no identity until a real lead of the body
confirms it, and then it can. Also: a role or body change makes an account pending again, a lead refuses
one with a reason the admin sees, and the development ``log`` channel prints the link on the console only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from reprisals.access_log import AccessEntry
from reprisals.config import load_settings
from reprisals.models import User
from reprisals.runtime import Runtime
from tests.conftest import DATABASES
from tests.factories import CANARY_NAME
from tests.support.invitations import invitation_token, token_in
from tests.support.smtp_server import SmtpServer
from tests.web.conftest import Web, csrf_token, settings_env
from tests.web.two_factor_pages import enrol
from web.app import create_app
from web.scheduler import build_channels, run_delivery

MALLORY = "mallory.lead@example.test"
NEW_PASSWORD = "a long password nobody guesses"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def mailing_web(web: Web, smtp: SmtpServer, tmp_path: Path) -> Iterator[Web]:
    """``web`` whose e-mail goes over SMTP to the loopback server (the same clock and database)."""
    settings = load_settings(settings_env(web.database, tmp_path, EMAIL_CHANNEL="smtp", SMTP_URL=smtp.url(),
                                          MAIL_FROM="service@reprisals.example.test"), dotenv=None)
    rt = Runtime.from_settings(settings, clock=web.clock)
    yield Web(create_app(runtime=rt, testing=True), rt, web.clock, web.database, web.world)
    rt.close()


def _get(client: object, path: str, status: int = 200) -> str:
    response = client.get(path)  # type: ignore[attr-defined]
    assert response.status_code == status, (path, response.status_code)
    return str(response.get_data(as_text=True))


def _user(web: Web, email: str) -> User:
    with web.database.session() as s:
        return s.scalars(sa.select(User).where(User.email == email)).one()


def _kinds(web: Web, subject_id: int) -> list[str]:
    with web.database.session() as s:
        return list(s.scalars(sa.select(AccessEntry.kind).where(AccessEntry.subject_user_id == subject_id,
                                                                AccessEntry.kind.not_like("sign%"))
                              .order_by(AccessEntry.id)))


def _ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The application's log records (the test's SMTP server logs what it receives: the mailbox's side)."""
    records = [r for r in caplog.records if not r.name.startswith("mail.log")]
    assert records  # the log was listened to
    return records


def _show_identity(web: Web, client: object, reference: str) -> object:
    return web.post(client, f"/cases/{reference}/identity", {"reason": "Checking the account"},  # type: ignore[arg-type]
                    form_page="/account/")


def test_an_admin_cannot_reach_identity_by_inviting_a_lead(mailing_web: Web, smtp: SmtpServer,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    web, ref = mailing_web, mailing_web.world.triaged
    caplog.set_level(logging.DEBUG)
    admin = web.sign_in(web.world.admin)
    invited = web.post(admin, "/admin/users", {"name": "Mallory Lead", "email": MALLORY, "role": "lead",
                                               "body_code": "IMB"})
    assert invited.status_code == 302
    mallory = _user(web, MALLORY)
    admin_pages = [_get(admin, invited.headers["Location"]), _get(admin, "/admin/users"),
                   _get(admin, f"/admin/users/{mallory.id}"), _get(admin, "/admin/failed-messages")]
    assert "An invitation has been e-mailed to Mallory Lead" in admin_pages[0]
    assert "Waiting for a lead of IMB" in admin_pages[2]

    # The link reaches the invitee's mailbox, and only there.
    run_delivery(web.rt, build_channels(web.rt.settings))
    [mail] = [m for m in smtp.received if MALLORY in m.rcpt_tos]
    body = mail.message().get_body(("plain",))
    assert body is not None
    token = token_in(body.get_content())
    assert token
    with web.database.session() as s:
        assert invitation_token(s, MALLORY) == token
    for html in admin_pages:
        assert token not in html and "/invitation/" not in html
    assert all(token not in r.getMessage() for r in _ours(caplog))
    with web.database.session() as s:
        entries = list(s.scalars(sa.select(AccessEntry)))
    assert "invitation_sent" in [e.kind for e in entries] and all(token not in repr(e.detail) for e in entries)

    # The attacker, holding the mailbox, chooses the password and signs in: a pending account.
    invitee = web.client()
    accept = web.post(invitee, f"/invitation/{token}", {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert accept.status_code == 302
    as_mallory = web.sign_in(MALLORY, NEW_PASSWORD)
    home = _get(as_mallory, "/")
    assert "Your account is waiting for confirmation" in home and ref not in home
    assert "waiting for confirmation" in _get(as_mallory, "/cases/", 403)
    assert "waiting for confirmation" in _get(as_mallory, "/accounts/pending", 403)
    _get(as_mallory, f"/cases/{ref}", 404)
    refused = _show_identity(web, as_mallory, ref)
    assert refused.status_code == 404 and CANARY_NAME not in refused.get_data(as_text=True)  # type: ignore[attr-defined]

    # A real lead of IMB is told, sees the account waiting, and confirms it.
    lead = web.sign_in(web.world.lead)
    run_delivery(web.rt, build_channels(web.rt.settings))
    assert "An account is waiting for you to confirm it" in _get(lead, "/inbox/")
    assert "1 account is waiting" in _get(lead, "/")
    listed = _get(lead, "/accounts/pending")
    assert "Mallory Lead" in listed and MALLORY in listed
    done = web.post(lead, f"/accounts/pending/{mallory.id}/confirm", {}, form_page="/accounts/pending")
    assert done.status_code == 302
    assert "Mallory Lead&#39;s account is confirmed" in _get(lead, "/accounts/pending")

    # Only now can the account see the case and who the person is.
    _get(as_mallory, f"/cases/{ref}")
    shown = _show_identity(web, as_mallory, ref)
    assert shown.status_code == 302  # unlocked: the case page shows who the person is for 30 minutes
    page = _get(as_mallory, shown.headers["Location"])  # type: ignore[attr-defined]
    assert CANARY_NAME in page
    assert _kinds(web, mallory.id) == ["invitation_sent", "invitation_accepted", "account_confirmed"]


def test_a_new_role_makes_an_account_pending_again_and_a_lead_refuses_it_with_a_reason(web: Web) -> None:
    staff = _user(web, web.world.staff)
    admin = web.sign_in(web.world.admin)
    changed = web.post(admin, f"/admin/users/{staff.id}", {"role": "lead", "body_code": "IMB"})
    assert changed.status_code == 302
    assert "must confirm the account" in _get(admin, changed.headers["Location"])
    as_staff = web.sign_in(web.world.staff)  # the change signed them out
    assert "Your account is waiting for confirmation" in _get(as_staff, "/")
    _get(as_staff, f"/cases/{web.world.triaged}", 404)  # assigned to them, but not while pending

    lead = web.sign_in(web.world.lead)
    refuse = f"/accounts/pending/{staff.id}/refuse"
    blank = web.post(lead, refuse, {"reason": "   "})
    html = blank.get_data(as_text=True)
    assert blank.status_code == 400 and 'href="#reason"' in html and "Enter why you are refusing" in html
    assert _user(web, web.world.staff).active is True and _kinds(web, staff.id) == ["role_changed"]
    # A lead of another body finds no such account; the account cannot decide on itself.
    outside = web.sign_in(web.world.outside_lead)
    assert web.post(outside, refuse, {"reason": "No"}, form_page="/accounts/pending").status_code == 404

    done = web.post(lead, refuse, {"reason": "Not a lead of ours: works on the wing as staff"})
    assert done.status_code == 302
    refused = _user(web, web.world.staff)
    assert refused.active is False and refused.pending
    assert _get(as_staff, "/", 302)  # signed out
    page = _get(admin, f"/admin/users/{staff.id}")
    assert "Refused by" in page and "Not a lead of ours: works on the wing as staff" in page
    assert _kinds(web, staff.id) == ["role_changed", "account_refused"]
    with web.database.session() as s:
        [entry] = s.scalars(sa.select(AccessEntry).where(AccessEntry.kind == "account_refused"))
        assert "wing" not in repr(entry.detail)  # the reason stays on the account, never in the log

    # Reactivated, it waits for a lead again; confirmed, it works as a lead.
    web.post(admin, f"/admin/users/{staff.id}/active", {}, form_page=f"/admin/users/{staff.id}")
    assert "Not a lead of ours" not in _get(admin, f"/admin/users/{staff.id}")
    assert web.post(lead, f"/accounts/pending/{staff.id}/confirm", {},
                    form_page="/accounts/pending").status_code == 302
    _get(web.sign_in(web.world.staff), f"/cases/{web.world.triaged}")


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # channels and settings, not the database
def test_the_log_channel_prints_the_link_on_the_console_never_in_the_log(
        web: Web, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    admin = web.sign_in(web.world.admin)
    assert web.post(admin, "/admin/users", {"name": "Dev Person", "email": "dev@example.test", "role": "auditor",
                                            "body_code": "IMB"}).status_code == 302
    run_delivery(web.rt, build_channels(web.rt.settings))  # development: the log channel
    printed = capsys.readouterr().err
    token = token_in(printed)
    assert token and "e-mail to dev@example.test" in printed
    assert all(token not in r.getMessage() for r in _ours(caplog))
    with web.database.session() as s:
        assert invitation_token(s, "dev@example.test") == token
        assert not s.execute(sa.text("SELECT count(*) FROM inbox_items WHERE body LIKE :t"),
                             {"t": f"%{token}%"}).scalar_one()


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # both: tests/reprisals/test_confirmations.py
def test_production_refuses_to_send_invitations_through_the_log_channel(web: Web, tmp_path: Path) -> None:
    settings = load_settings(settings_env(web.database, tmp_path, ENV="production"), dotenv=None)
    assert settings.email_channel == "log"
    rt = Runtime.from_settings(settings, clock=web.clock)
    try:
        app = create_app(runtime=rt, testing=True)
        client = app.test_client()
        client.environ_base["wsgi.url_scheme"] = "https"  # production cookies are Secure
        prod = Web(app, rt, web.clock, web.database, web.world)
        prod.sign_in(web.world.admin, client=client)
        enrol(web, client)  # production: two-factor sign-in first
        before = _count(web)
        page = client.get("/admin/users").get_data(as_text=True)
        refused = client.post("/admin/users", data={"name": "Nia", "email": "nia@example.test", "role": "staff",
                                                     "body_code": "IMB", "csrf_token": csrf_token(page)})
        html = refused.get_data(as_text=True)
        assert refused.status_code == 400
        assert "Invitations cannot be sent: e-mail is not set up" in html and "reprisals users add" in html
        assert _count(web) == before
    finally:
        rt.close()


def _count(web: Web) -> tuple[int, int, int]:
    with web.database.engine.connect() as conn:
        return tuple(int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one())  # type: ignore[return-value]
                     for t in ("users", "invitations", "outbox"))
