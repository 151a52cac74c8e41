"""Signing in and out: server-side sessions, throttling in the database, safe redirects, time-outs.

Each pitfall of PITFALLS.md for Flask-Login/Werkzeug has a test here that fails if it comes back:
sessions surviving sign-out (a copied cookie), remember-me, open redirects, weak password hashing and
per-process rate limits (a second app instance on the same database sees the same failures).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from reprisals.accounts import ABSOLUTE, FREE_FAILURES, IDLE
from tests.web.conftest import PASSWORD, Web, csrf_token


def _sign_in_response(web: Web, client: FlaskClient, email: str, password: str, next_: str | None = None) -> Any:
    page = client.get("/sign-in" + (f"?next={next_}" if next_ else ""))
    token = csrf_token(page.get_data(as_text=True))
    path = "/sign-in" + (f"?next={next_}" if next_ else "")
    return client.post(path, data={"email": email, "password": password, "csrf_token": token})


def test_sign_in_with_the_right_password_reaches_home_and_a_session_row(web: Web) -> None:
    client = web.sign_in(web.world.lead)

    home = client.get("/")
    assert home.status_code == 200
    assert "Sign out" in home.get_data(as_text=True)
    rows = web.database.raw("SELECT count(*) AS n FROM web_sessions WHERE ended_at IS NULL")
    assert rows[0].n == 1


def test_wrong_password_and_unknown_account_get_the_same_answer(web: Web) -> None:
    wrong = _sign_in_response(web, web.client(), web.world.lead, "not the password at all")
    unknown = _sign_in_response(web, web.client(), "nobody@example.test", "not the password at all")

    assert wrong.status_code == unknown.status_code == 200
    for response in (wrong, unknown):
        html = response.get_data(as_text=True)
        assert "Enter a correct email address and password" in html
        assert 'class="govuk-error-summary"' in html and 'href="#email"' in html
    assert web.database.raw("SELECT count(*) AS n FROM web_sessions")[0].n == 0


def test_wrong_passwords_wait_a_minute_then_doubling_answered_at_once_with_429_and_retry_after(web: Web) -> None:
    statuses = [_sign_in_response(web, web.client(), web.world.staff, f"wrong {i}").status_code
                for i in range(FREE_FAILURES)]
    assert statuses == [200] * FREE_FAILURES

    blocked = _sign_in_response(web, web.client(), web.world.staff, PASSWORD)  # even the right password
    assert (blocked.status_code, blocked.headers["Retry-After"]) == (429, "60")
    html = blocked.get_data(as_text=True)
    assert "Too many failed attempts to sign in. Wait 1 minute and try again." in html
    assert 'class="govuk-error-summary"' in html and 'href="#email"' in html
    web.clock.advance(timedelta(seconds=60))
    assert _sign_in_response(web, web.client(), web.world.staff, "wrong again").status_code == 200
    doubled = _sign_in_response(web, web.client(), web.world.staff, PASSWORD)
    assert (doubled.status_code, doubled.headers["Retry-After"]) == (429, "120")
    assert "Wait 2 minutes" in doubled.get_data(as_text=True)
    # An unknown address is throttled the same way: the answer reveals nothing about accounts.
    for i in range(FREE_FAILURES):
        assert _sign_in_response(web, web.client(), "ghost@example.test", f"wrong {i}").status_code == 200
    ghost = _sign_in_response(web, web.client(), "ghost@example.test", "x")
    assert (ghost.status_code, ghost.headers["Retry-After"]) == (429, "60")
    # ... and the wait passes.
    web.clock.advance(timedelta(seconds=120))
    assert _sign_in_response(web, web.client(), web.world.staff, PASSWORD).status_code == 302


def test_throttling_counts_across_processes_not_per_process(web: Web, tmp_path: Any) -> None:
    """Two application instances (as two gunicorn workers) on one database share the failure count."""
    from reprisals.config import load_settings
    from reprisals.runtime import Runtime
    from tests.web.conftest import settings_env
    from web.app import create_app

    rt2 = Runtime.from_settings(load_settings(settings_env(web.database, tmp_path / "second"), dotenv=None),
                                clock=web.clock)
    second = create_app(runtime=rt2, testing=True)
    try:
        for i in range(FREE_FAILURES):
            app_client = (web.client() if i % 2 else second.test_client())
            _sign_in_response(web, app_client, web.world.staff, f"wrong {i}")
        assert _sign_in_response(web, second.test_client(), web.world.staff, PASSWORD).status_code == 429
        assert _sign_in_response(web, web.client(), web.world.staff, PASSWORD).status_code == 429
    finally:
        rt2.close()


def test_a_copied_cookie_stops_working_at_sign_out(web: Web) -> None:
    client = web.sign_in(web.world.lead)
    cookie = client.get_cookie("reprisals_session")
    assert cookie is not None
    thief = web.client()
    thief.set_cookie("reprisals_session", cookie.value)
    assert thief.get("/").status_code == 200  # the same session, before sign-out

    out = web.post(client, "/sign-out", {}, form_page="/")
    assert out.status_code == 302

    assert thief.get("/").status_code == 302  # back to sign-in: the server ended the session
    assert thief.get("/").headers["Location"].startswith("/sign-in")


def test_no_remember_me_cookie_is_ever_set(web: Web) -> None:
    client = web.client()
    response = _sign_in_response(web, client, web.world.lead, PASSWORD)
    cookies = response.headers.getlist("Set-Cookie")
    assert cookies and not any(c.startswith("remember_token") for c in cookies)
    assert all("HttpOnly" in c and "SameSite=Lax" in c for c in cookies)


def test_the_session_is_renewed_at_sign_in(web: Web) -> None:
    client = web.client()
    client.get("/sign-in")
    before = client.get_cookie("reprisals_session")
    _sign_in_response(web, client, web.world.lead, PASSWORD)
    after = client.get_cookie("reprisals_session")
    assert before is not None and after is not None and before.value != after.value
    # A second sign-in makes a second, different session row (a new token each time).
    web.sign_in(web.world.lead)
    hashes = web.database.raw("SELECT token_hash FROM web_sessions")
    assert len({r.token_hash for r in hashes}) == 2


def test_the_session_ends_after_30_idle_minutes(web: Web) -> None:
    client = web.sign_in(web.world.lead)
    web.clock.advance(IDLE - timedelta(minutes=1))
    assert client.get("/").status_code == 200  # activity keeps it alive
    web.clock.advance(IDLE - timedelta(minutes=1))
    assert client.get("/").status_code == 200
    web.clock.advance(IDLE + timedelta(seconds=1))
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/sign-in")
    assert web.database.raw("SELECT ended_why FROM web_sessions")[0].ended_why == "idle"


def test_the_session_ends_at_the_absolute_limit_even_when_active(web: Web) -> None:
    client = web.sign_in(web.world.lead)
    steps = int(ABSOLUTE / timedelta(minutes=20)) + 1
    codes = []
    for _ in range(steps):
        web.clock.advance(timedelta(minutes=20))
        codes.append(client.get("/").status_code)
    assert codes[0] == 200 and codes[-1] == 302


def test_a_deactivated_user_is_signed_out_at_the_next_request(web: Web) -> None:
    client = web.sign_in(web.world.staff)
    with web.database.engine.begin() as conn:
        conn.execute(sa.text("UPDATE users SET active = :f WHERE email = :e"), {"f": False, "e": web.world.staff})
    assert client.get("/").status_code == 302
    assert _sign_in_response(web, web.client(), web.world.staff, PASSWORD).status_code == 200  # refused


@pytest.mark.parametrize("target", [
    "https://elsewhere.example", "//elsewhere.example", "/\\elsewhere.example", "\\/elsewhere.example",
    "%2F%2Felsewhere.example", "javascript:alert(1)", "/%2F/elsewhere.example", "https:/elsewhere.example",
    "%252F%252Felsewhere.example", "/\telsewhere.example",
])
def test_next_never_leaves_the_site(web: Web, target: str) -> None:
    from urllib.parse import quote

    response = _sign_in_response(web, web.client(), web.world.lead, PASSWORD, next_=quote(target, safe=""))
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_next_within_the_site_is_followed(web: Web) -> None:
    response = _sign_in_response(web, web.client(), web.world.lead, PASSWORD, next_="/inbox/")
    assert response.headers["Location"] == "/inbox/"


def test_sign_in_without_a_csrf_token_is_refused_and_signs_nobody_in(web: Web) -> None:
    client = web.client()
    response = client.post("/sign-in", data={"email": web.world.lead, "password": PASSWORD})
    assert response.status_code == 400
    assert "Your form could not be sent" in response.get_data(as_text=True)
    assert web.database.raw("SELECT count(*) AS n FROM web_sessions")[0].n == 0


def test_sign_out_without_a_csrf_token_is_refused(web: Web) -> None:
    client = web.sign_in(web.world.lead)
    assert client.post("/sign-out").status_code == 400
    assert client.get("/").status_code == 200  # still signed in


def test_passwords_are_argon2id_above_owasp_minimum(web: Web) -> None:
    from argon2 import extract_parameters

    stored = web.database.raw("SELECT password_hash FROM users LIMIT 1")[0].password_hash
    params = extract_parameters(stored)
    assert stored.startswith("$argon2id$")
    assert params.memory_cost >= 19 * 1024 and params.time_cost >= 2


def test_a_weak_old_hash_is_upgraded_at_sign_in(web: Web) -> None:
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    with web.database.engine.begin() as conn:
        conn.execute(sa.text("UPDATE users SET password_hash = :h WHERE email = :e"), {"h": weak, "e": web.world.lead})
    web.sign_in(web.world.lead)
    stored = web.database.raw("SELECT password_hash FROM users WHERE email = :e", e=web.world.lead)[0].password_hash
    assert stored != weak and "m=19456,t=2" in stored
