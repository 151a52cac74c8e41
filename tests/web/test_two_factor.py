"""Two-factor sign-in through the pages: setting it up (the code computed with pyotp from the secret the
page shows), signing in with a code, wrong and reused codes refused and counted, recovery codes that work
once, the two-person reset and the operator's, production requiring it, and API tokens made only from a
session that gave its second factor (never through the API)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from reprisals.access_log import AccessEntry
from reprisals.accounts import user_for_token
from reprisals.crypto import Cipher, generate_key
from reprisals.runtime import Runtime
from reprisals.services import rotate_keys
from tests.conftest import DATABASES
from tests.factories import TEST_KEY
from tests.web.conftest import PASSWORD, Cli, Web, csrf_token, settings_env
from tests.web.two_factor_pages import CODES, SECRET, enrol

NEW_PASSWORD = "another long passphrase here"


def _user_id(web: Web, email: str) -> int:
    return int(web.database.raw("SELECT id FROM users WHERE email = :e", e=email)[0].id)


def _log(web: Web, *kinds: str) -> list[AccessEntry]:
    with web.database.session() as s:
        return list(s.scalars(sa.select(AccessEntry).where(AccessEntry.kind.in_(kinds)).order_by(AccessEntry.id)))


def _text(response: Any) -> str:
    return str(response.get_data(as_text=True))


def _post(client: FlaskClient, path: str, data: dict[str, str], form_page: str | None = None, **kw: Any) -> Any:
    page = client.get(form_page or path, **kw)
    return client.post(path, data={**data, "csrf_token": csrf_token(_text(page))}, **kw)


def _sign_in(web: Web, email: str, client: FlaskClient | None = None, **kw: Any) -> tuple[FlaskClient, Any]:
    client = client or web.client()
    response = _post(client, "/sign-in", {"email": email, "password": PASSWORD}, **kw)
    assert response.status_code == 302, _text(response)[:500]
    return client, response


def _code(web: Web, secret: str) -> str:
    return pyotp.TOTP(secret).at(web.clock.now())


def test_enrol_through_the_pages_then_sign_in_with_a_code(web: Web) -> None:
    lead = web.world.lead
    client, _ = _sign_in(web, lead)
    assert client.get("/cases/").status_code == 200  # development: no second step until it is set up
    account = _text(client.get("/account/"))
    assert "Set up two-factor sign-in" in account

    page = client.get("/two-factor/set-up")
    html = _text(page)
    secret = SECRET.search(html).group(1).replace(" ", "")  # type: ignore[union-attr]
    assert SECRET.search(_text(client.get("/two-factor/set-up"))).group(1).replace(" ", "") == secret  # type: ignore[union-attr]  # a reload keeps it
    wrong = client.post("/two-factor/set-up", data={"code": "000000", "csrf_token": csrf_token(html)})
    assert wrong.status_code == 400
    assert "The code is not correct. Enter the 6-digit code your app shows now" in _text(wrong)
    assert "govuk-error-summary" in _text(wrong)
    assert _log(web, "two_factor_enrolled") == []

    done = client.post("/two-factor/set-up", data={"code": _code(web, secret), "csrf_token": csrf_token(html)})
    codes = CODES.findall(_text(done))
    assert done.status_code == 200 and len(codes) == 10
    assert "They will not be shown again" in _text(done)
    (entry,) = _log(web, "two_factor_enrolled")
    assert entry.actor_id == entry.subject_user_id == _user_id(web, lead)
    # The secret is stored encrypted, the codes hashed.
    stored = web.database.raw("SELECT secret_ciphertext FROM two_factor_credentials")[0].secret_ciphertext
    assert secret not in stored
    new_key = generate_key()
    with web.database.session() as s:  # `keys rotate` re-encrypts it, sealed to the user
        assert rotate_keys(s, Cipher([new_key, TEST_KEY])) >= 1
        s.commit()
    rotated = web.database.raw("SELECT secret_ciphertext FROM two_factor_credentials")[0].secret_ciphertext
    assert Cipher([new_key]).decrypt(f"totp:{_user_id(web, lead)}", rotated) == secret
    web.database.raw("UPDATE two_factor_credentials SET secret_ciphertext = :c", c=stored)
    hashes = " ".join(r.code_hash for r in web.database.raw("SELECT code_hash FROM recovery_codes"))
    assert not any(c.replace("-", "") in hashes or c in hashes for c in codes)
    assert "Make new recovery codes" in _text(client.get("/account/"))

    # Next sign-in: the password alone reaches only the second step.
    web.clock.advance(timedelta(seconds=60))
    again, response = _sign_in(web, lead)
    step = again.get(response.headers["Location"])
    assert step.status_code == 302 and step.headers["Location"].startswith("/sign-in/code")
    cases = again.get("/cases/")
    assert cases.status_code == 302 and cases.headers["Location"].startswith("/sign-in/code?next=/cases/")
    assert again.get("/account/").status_code == 302
    code_page = _text(again.get("/sign-in/code?next=/cases/"))
    assert "Your account" not in code_page and "Sign out" in code_page  # no navigation, but a way out
    empty = _post(again, "/sign-in/code?next=/cases/", {"code": ""})
    assert empty.status_code == 400 and "Enter the 6-digit code from your app" in _text(empty)
    ok = _post(again, "/sign-in/code?next=/cases/", {"code": _code(web, secret)})
    assert ok.status_code == 302 and ok.headers["Location"] == "/cases/"
    assert again.get("/cases/").status_code == 200
    # The same code does not work twice (another session, the same 30 seconds).
    third, _ = _sign_in(web, lead)
    reused = _post(third, "/sign-in/code", {"code": _code(web, secret)})
    assert reused.status_code == 400 and "That code has been used already" in _text(reused)
    assert third.get("/cases/").status_code == 302
    # Wrong codes are counted: after 5, even the right code waits (recovery codes too).
    for _ in range(4):
        wrong = _post(third, "/sign-in/code", {"code": "12345x"})
        assert wrong.status_code == 400 and "The code is not correct" in _text(wrong)
    web.clock.advance(timedelta(seconds=30))
    locked = _post(third, "/sign-in/code", {"code": _code(web, secret)})
    assert locked.status_code == 429
    assert "Too many wrong codes. Wait 15 minutes and try again." in _text(locked)
    assert 14 * 60 < int(locked.headers["Retry-After"]) <= 15 * 60
    assert _post(third, "/sign-in/recovery-code", {"code": codes[0]}).status_code == 429
    assert third.get("/cases/").status_code == 302
    assert len(_log(web, "two_factor_locked")) == 1
    web.clock.advance(timedelta(minutes=15))
    assert _post(third, "/sign-in/code", {"code": _code(web, secret)}).status_code == 302
    assert third.get("/cases/").status_code == 200
    # A password-only session can sign out.
    fourth, _ = _sign_in(web, lead)
    assert _post(fourth, "/sign-out", {}, form_page="/sign-in/code").status_code == 302
    assert fourth.get("/sign-in/code").status_code == 302


def test_a_recovery_code_works_once(web: Web) -> None:
    client, _ = _sign_in(web, web.world.staff)
    _secret, codes = enrol(web, client)
    first, _ = _sign_in(web, web.world.staff)
    bad = _post(first, "/sign-in/recovery-code", {"code": "not-a-code"})
    assert bad.status_code == 400 and "The recovery code is not correct" in _text(bad)
    ok = _post(first, "/sign-in/recovery-code?next=/inbox/", {"code": codes[3].lower()})  # case does not matter
    assert ok.status_code == 302 and ok.headers["Location"] == "/inbox/"
    assert "you have 9 left" in _text(first.get("/inbox/"))
    (entry,) = _log(web, "recovery_code_used")
    assert entry.detail == {"codes_left": 9} and entry.subject_user_id == _user_id(web, web.world.staff)
    second, _ = _sign_in(web, web.world.staff)
    used = _post(second, "/sign-in/recovery-code", {"code": codes[3]})
    assert used.status_code == 400 and "That recovery code has been used already" in _text(used)
    assert second.get("/cases/").status_code == 302
    elsewhere = _post(second, "/sign-in/recovery-code?next=//evil.example", {"code": codes[4]})
    assert elsewhere.status_code == 302 and elsewhere.headers["Location"] == "/"  # never off the site
    # New codes replace the old ones.
    renewed = _post(second, "/account/two-factor/recovery-codes", {}, form_page="/account/")
    fresh = CODES.findall(_text(renewed))
    assert renewed.status_code == 200 and len(fresh) == 10 and "Your old codes no longer work" in _text(renewed)
    third, _ = _sign_in(web, web.world.staff)
    assert _post(third, "/sign-in/recovery-code", {"code": codes[5]}).status_code == 400
    assert _post(third, "/sign-in/recovery-code", {"code": fresh[0]}).status_code == 302


def test_a_reset_takes_an_admin_and_a_lead_of_the_body_or_for_an_admin_the_operator(web: Web, run: Cli) -> None:
    w = web.world
    member, _ = _sign_in(web, w.staff)
    enrol(web, member)
    staff_id = _user_id(web, w.staff)
    admin, _ = _sign_in(web, w.admin)
    user_page = _text(admin.get(f"/admin/users/{staff_id}"))
    assert "Ask for a reset" in user_page
    asked = _post(admin, f"/admin/users/{staff_id}/two-factor-reset", {}, form_page=f"/admin/users/{staff_id}")
    assert asked.status_code == 302
    page = _text(admin.get(asked.headers["Location"]))
    assert "It happens when a lead of IMB approves" in page and "must approve it" in page
    again = _post(admin, f"/admin/users/{staff_id}/two-factor-reset", {}, form_page=f"/admin/users/{staff_id}")
    assert "has been asked for already" in _text(admin.get(again.headers["Location"]))
    assert len(_log(web, "two_factor_reset_asked")) == 1 and _log(web, "two_factor_reset") == []

    # A lead of another body sees nothing to approve and cannot approve it.
    (request_id,) = [r.id for r in web.database.raw("SELECT id FROM two_factor_resets")]
    outside, _ = _sign_in(web, w.outside_lead)
    assert "There are no requests waiting for you" in _text(outside.get("/two-factor-resets"))
    refused = _post(outside, f"/two-factor-resets/{request_id}/approve", {}, form_page="/two-factor-resets")
    assert "There is no such request for you to decide" in _text(outside.get(refused.headers["Location"]))
    # Nor can the member themself, or an admin.
    assert _post(member, f"/two-factor-resets/{request_id}/approve", {}, form_page="/account/").status_code == 403
    assert admin.get("/two-factor-resets").status_code == 403
    assert web.database.raw("SELECT count(*) AS n FROM two_factor_credentials")[0].n == 1

    lead, _ = _sign_in(web, w.lead)
    home = _text(lead.get("/"))
    assert "1 request to reset a member’s two-factor sign-in" in home  # noqa: RUF001
    listed = _text(lead.get("/two-factor-resets"))
    assert "Approve reset" in listed
    approved = _post(lead, f"/two-factor-resets/{request_id}/approve", {}, form_page="/two-factor-resets")
    assert "two-factor sign-in has been reset" in _text(lead.get(approved.headers["Location"]))
    assert web.database.raw("SELECT count(*) AS n FROM two_factor_credentials")[0].n == 0
    assert web.database.raw("SELECT count(*) AS n FROM recovery_codes")[0].n == 0
    assert member.get("/cases/").status_code == 302  # their sessions ended
    (entry,) = _log(web, "two_factor_reset")
    assert (entry.actor_id, entry.subject_user_id, entry.via) == (_user_id(web, w.lead), staff_id, "web")
    assert entry.detail["asked_by"] == _user_id(web, w.admin)
    fresh, _ = _sign_in(web, w.staff)  # development: in with the password, free to set it up again
    assert fresh.get("/cases/").status_code == 200

    # An administrator's: only the operator.
    admin, _ = _sign_in(web, web.world.admin)
    enrol(web, admin)
    admin_id = _user_id(web, web.world.admin)
    page = _text(admin.get(f"/admin/users/{admin_id}"))
    assert "reprisals users reset-2fa" in page and "Ask for a reset" not in page
    refused = _post(admin, f"/admin/users/{admin_id}/two-factor-reset", {}, form_page=f"/admin/users/{admin_id}")
    assert "can only be reset by the operator" in _text(admin.get(refused.headers["Location"]))

    unknown = run("users", "reset-2fa", "nobody@example.org")
    assert unknown.exit_code == 1 and "error: there is no user with e-mail nobody@example.org" in unknown.stderr
    not_set = run("users", "reset-2fa", web.world.auditor)
    assert not_set.exit_code == 1 and "has not set up two-factor sign-in" in not_set.stderr
    done = run("users", "reset-2fa", web.world.admin.upper())
    assert done.exit_code == 0, done.output
    assert "reset" in done.stdout
    assert web.database.raw("SELECT count(*) AS n FROM two_factor_credentials")[0].n == 0
    entry = _log(web, "two_factor_reset")[-1]
    assert (entry.actor_id, entry.subject_user_id, entry.via) == (None, admin_id, "cli")
    assert admin.get("/admin/").status_code == 302  # signed out




@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # page rules: one database is enough
def test_api_tokens_only_from_a_two_factor_session_or_the_operator(web: Web, run: Cli) -> None:
    lead = web.world.lead
    client, _ = _sign_in(web, lead)
    account = _text(client.get("/account/"))
    assert "You can create API tokens only after signing in with two-factor sign-in" in account
    refused = _post(client, "/account/tokens", {"name": "report script"}, form_page="/account/")
    assert refused.status_code == 403
    assert "a token acts as you without that step" in _text(refused)
    assert web.database.raw("SELECT count(*) AS n FROM api_tokens")[0].n == 0

    enrol(web, client)  # this session has now given its second factor
    changed = _post(client, "/account/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                                  "confirm_password": NEW_PASSWORD}, form_page="/account/")
    assert changed.status_code == 302  # the session that continues keeps its second factor
    made = _post(client, "/account/tokens", {"name": "report script"}, form_page="/account/")
    assert made.status_code == 200
    secret = _text(made).split('id="secret">', 1)[1].split("<", 1)[0]
    (created,) = _log(web, "token_created")
    assert (created.actor_id, created.subject_user_id, created.via) == (_user_id(web, lead), _user_id(web, lead),
                                                                        "web")

    # A token cannot make tokens: the API has no such route, and says so in its own terms.
    api = web.client()
    bearer = {"Authorization": f"Bearer {secret}"}
    assert api.get("/api/tokens", headers=bearer).status_code == 200
    post = api.post("/api/tokens", json={"name": "from a token"}, headers=bearer)
    assert post.status_code == 405 and post.content_type == "application/problem+json"
    assert web.database.raw("SELECT count(*) AS n FROM api_tokens")[0].n == 1
    spec = api.get("/api/openapi.json").get_json()
    assert not [(p, m) for p, ops in spec["paths"].items() for m in ops if "token" in p and m == "post"]
    with web.database.session() as s:
        assert user_for_token(s, secret, web.clock.now()) is not None
    token_id = api.get("/api/tokens", headers=bearer).get_json()["items"][0]["id"]
    assert api.delete(f"/api/tokens/{token_id}", headers=bearer).status_code == 200
    (revoked,) = _log(web, "token_revoked")
    assert (revoked.actor_id, revoked.via) == (_user_id(web, lead), "api")

    # The operator makes them on the server, logged as the operator's.
    cli = run("tokens", "add", "--email", web.world.staff, "--name", "import script")
    assert cli.exit_code == 0, cli.output
    entry = _log(web, "token_created")[-1]
    assert (entry.actor_id, entry.subject_user_id, entry.via) == (None, _user_id(web, web.world.staff), "cli")


@pytest.fixture
def production(web: Web, tmp_path: Path) -> Any:
    from reprisals.config import load_settings
    from web.app import create_app

    rt = Runtime.from_settings(load_settings(settings_env(web.database, tmp_path, ENV="production"), dotenv=None),
                               clock=web.clock)
    yield create_app(runtime=rt, testing=True)
    rt.close()


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)
def test_production_requires_every_account_to_set_it_up_first(web: Web, production: Any) -> None:
    https = {"base_url": "https://localhost", "headers": {"Referer": "https://localhost/"}}
    client = production.test_client()
    _, response = _sign_in(web, web.world.auditor, client, **https)
    first = client.get(response.headers["Location"], **https)
    assert first.status_code == 302 and first.headers["Location"].startswith("/two-factor/set-up")
    for path in ("/cases/", "/account/", "/reports/", "/sign-in/code"):
        blocked = client.get(path, **https)
        assert blocked.status_code == 302 and blocked.headers["Location"].startswith("/two-factor/set-up"), path
    page = _text(client.get("/two-factor/set-up", **https))
    assert "Every account of this service must sign in with a second step" in page
    enrol(web, client, **https)
    assert client.get("/cases/", **https).status_code == 200
    (entry,) = _log(web, "two_factor_enrolled")
    assert entry.subject_user_id == _user_id(web, web.world.auditor)


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)
def test_an_address_becomes_known_only_once_the_second_step_is_given(web: Web) -> None:
    """The rule for accounts under attack lets in only addresses the account signed in from: with two-factor
    sign-in, an address that knew only the password must not become one."""
    lead = web.world.lead
    client, _ = _sign_in(web, lead)
    secret, _codes = enrol(web, client)
    uid = _user_id(web, lead)

    def known() -> int:
        return int(web.database.raw("SELECT count(*) FROM sign_in_addresses WHERE user_id = :u", u=uid)[0][0])

    web.database.raw("DELETE FROM sign_in_addresses")
    web.clock.advance(timedelta(seconds=60))
    other = {"environ_base": {"REMOTE_ADDR": "203.0.113.40"}}
    again, _ = _sign_in(web, lead, **other)
    assert known() == 0  # the password alone
    assert _post(again, "/sign-in/code", {"code": _code(web, secret)}, **other).status_code == 302
    assert known() == 1
