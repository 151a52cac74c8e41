"""The account page: password change (errors, sessions), e-mail preference, API tokens."""

from __future__ import annotations

import sqlalchemy as sa

from reprisals.accounts import user_for_token
from reprisals.models import User
from tests.web.conftest import PASSWORD, Web
from tests.web.two_factor_pages import enrol

NEW = "a brand new long passphrase"


def _user(web: Web, email: str) -> User:
    with web.database.session() as s:
        return s.scalars(sa.select(User).where(User.email == email)).one()


def test_wrong_current_password_changes_nothing(web: Web) -> None:
    client = web.sign_in(web.world.staff)
    before = _user(web, web.world.staff).password_hash
    r = web.post(client, "/account/password", {"current_password": "not it at all!!", "new_password": NEW,
                                                "confirm_password": NEW}, form_page="/account/")
    html = r.get_data(as_text=True)
    assert r.status_code == 400
    assert "govuk-error-summary" in html and 'href="#current_password"' in html
    assert "Your current password is not correct" in html
    assert _user(web, web.world.staff).password_hash == before
    short = web.post(client, "/account/password", {"current_password": PASSWORD, "new_password": "short",
                                                   "confirm_password": "short"}, form_page="/account/")
    assert short.status_code == 400 and "at least 12 characters" in short.get_data(as_text=True)
    mismatch = web.post(client, "/account/password", {"current_password": PASSWORD, "new_password": NEW,
                                                      "confirm_password": NEW + "x"}, form_page="/account/")
    assert mismatch.status_code == 400 and "do not match" in mismatch.get_data(as_text=True)
    assert _user(web, web.world.staff).password_hash == before


def test_password_change_signs_out_other_sessions_and_keeps_this_one(web: Web) -> None:
    other = web.sign_in(web.world.staff)
    assert other.get("/account/").status_code == 200
    client = web.sign_in(web.world.staff)
    r = web.post(client, "/account/password", {"current_password": PASSWORD, "new_password": NEW,
                                                "confirm_password": NEW}, form_page="/account/")
    assert r.status_code == 302
    page = client.get("/account/")
    assert page.status_code == 200 and "Your password has been changed" in page.get_data(as_text=True)
    assert client.get("/").status_code == 200
    gone = other.get("/account/")
    assert gone.status_code == 302 and "/sign-in" in gone.headers["Location"]
    web.sign_in(web.world.staff, NEW)  # the new password works
    bad = web.client()
    page = bad.get("/sign-in").get_data(as_text=True)
    from tests.web.conftest import csrf_token

    assert bad.post("/sign-in", data={"email": web.world.staff, "password": PASSWORD,
                                      "csrf_token": csrf_token(page)}).status_code == 200  # old one refused


def test_email_preference_toggles(web: Web) -> None:
    client = web.sign_in(web.world.lead)
    assert _user(web, web.world.lead).email_notifications is True
    r = web.post(client, "/account/notifications", {"email_notifications": "off"}, form_page="/account/")
    assert r.status_code == 302 and _user(web, web.world.lead).email_notifications is False
    web.post(client, "/account/notifications", {"email_notifications": "on"}, form_page="/account/")
    assert _user(web, web.world.lead).email_notifications is True
    bad = web.post(client, "/account/notifications", {"email_notifications": "maybe"}, form_page="/account/")
    assert bad.status_code == 400 and "govuk-error-summary" in bad.get_data(as_text=True)
    assert _user(web, web.world.lead).email_notifications is True


def test_tokens_create_show_once_and_revoke(web: Web) -> None:
    client = web.sign_in(web.world.lead)
    enrol(web, client)  # tokens are made only from a session that gave its second factor
    empty = web.post(client, "/account/tokens", {"name": "  "}, form_page="/account/")
    assert empty.status_code == 400 and "govuk-error-summary" in empty.get_data(as_text=True)
    r = web.post(client, "/account/tokens", {"name": "report script"}, form_page="/account/")
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    secret = html.split('id="secret">', 1)[1].split("<", 1)[0]
    assert secret.startswith("rpr_")
    with web.database.session() as s:
        assert user_for_token(s, secret, web.clock.now()) is not None
    account = client.get("/account/").get_data(as_text=True)
    assert "report script" in account and secret not in account
    with web.database.session() as s:
        from reprisals.accounts import tokens_of

        token_id = tokens_of(s, _user(web, web.world.lead))[0].id
    other = web.sign_in(web.world.staff)  # someone else cannot revoke it
    assert web.post(other, f"/account/tokens/{token_id}/revoke", {}, form_page="/account/").status_code == 404
    r = web.post(client, f"/account/tokens/{token_id}/revoke", {}, form_page="/account/")
    assert r.status_code == 302
    assert "Revoked" in client.get("/account/").get_data(as_text=True)
    with web.database.session() as s:
        assert user_for_token(s, secret, web.clock.now()) is None
