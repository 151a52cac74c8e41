"""Sign-in cannot be turned against its users: a thousand guesses from one address get in nowhere and
are mostly refused before any password is hashed, while the real user signs in from elsewhere; the
client address is the peer's unless REPRISALS_TRUSTED_PROXIES says how many proxies to believe.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from reprisals.access_log import client_digest
from reprisals.accounts import FREE_FAILURES, SignedIn, Throttled, sign_in
from tests.conftest import DATABASES
from tests.web.conftest import PASSWORD, Web, csrf_token

ATTACKER = "198.51.100.66"


def _attempt(client: FlaskClient, email: str, password: str, remote: str, forwarded: str | None = None) -> Any:
    """The sign-in page and its form, as a browser at ``remote`` (with ``forwarded`` as X-Forwarded-For)."""
    kw: dict[str, Any] = {"environ_base": {"REMOTE_ADDR": remote},
                          "headers": {"X-Forwarded-For": forwarded} if forwarded else {}}
    page = client.get("/sign-in", **kw)
    return client.post("/sign-in", data={"email": email, "password": password,
                                         "csrf_token": csrf_token(page.get_data(as_text=True))}, **kw)


def _signed_in_clients(web: Web) -> list[str | None]:
    return [r.client_hash for r in web.database.raw(
        "SELECT client_hash FROM access_log WHERE kind = 'signed_in' ORDER BY id")]


def test_a_thousand_guesses_from_one_address_get_in_nowhere_and_the_real_user_signs_in_from_elsewhere(
        web: Web) -> None:
    w = web.world
    real = [w.lead, w.second_lead, w.staff, w.other_staff, w.outside_lead, w.auditor, w.admin]
    accounts = [a for pair in zip(real, [f"made.up{i}@example.test" for i in range(len(real))], strict=True)
                for a in pair]
    # The guesser's list holds the lead's real password three times, deep in it.
    guesses = [(accounts[i % len(accounts)], f"Summer{i}!") for i in range(1000)]
    for i in (400, 700, 999):
        guesses[i] = (w.lead, PASSWORD)

    answers: list[tuple[str, float]] = []
    for email, password in guesses[:990]:  # straight to the service, as the view calls it, one commit each
        now = web.clock.advance(timedelta(seconds=1))
        started = time.perf_counter()
        with web.rt.sessions() as s:
            try:
                answer = "in" if isinstance(sign_in(s, email, password, ATTACKER, now), SignedIn) else "wrong"
            except Throttled:
                answer = "wait"
            s.commit()
        answers.append((answer, time.perf_counter() - started))
    # The last ten through the real page: refused at once, with how long to wait.
    client = web.client()
    for email, password in guesses[990:]:
        response = _attempt(client, email, password, ATTACKER)
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) > 0
        assert "Too many failed attempts to sign in" in response.get_data(as_text=True)

    kinds = [a for a, _ in answers]
    assert kinds.count("in") == 0
    assert kinds.count("wait") >= 950, kinds.count("wrong")
    # A refusal is answered without hashing a password: far quicker than a guess that is checked.
    waited = statistics.median(t for a, t in answers if a == "wait")
    checked = statistics.median(t for a, t in answers if a == "wrong")
    assert waited * 4 < checked, (waited, checked)
    # Counted in a few buckets, not a row per guess.
    rows = web.database.raw("SELECT count(*) AS n, sum(failures) AS failures FROM sign_in_buckets")[0]
    assert rows.failures == kinds.count("wrong") and rows.n <= kinds.count("wrong")
    assert web.database.raw("SELECT count(*) AS n FROM web_sessions")[0].n == 0

    # The lead, from their own address, signs in at once.
    response = _attempt(web.client(), w.lead, PASSWORD, "192.0.2.44")
    assert response.status_code == 302
    assert _signed_in_clients(web) == [client_digest("192.0.2.44")]


@pytest.fixture
def behind_a_proxy(web: Web, tmp_path: Path) -> Iterator[Flask]:
    """The same application configured with REPRISALS_TRUSTED_PROXIES=1."""
    from reprisals.config import load_settings
    from reprisals.runtime import Runtime
    from tests.web.conftest import settings_env
    from web.app import create_app

    rt = Runtime.from_settings(load_settings(settings_env(web.database, tmp_path / "proxied", TRUSTED_PROXIES="1"),
                                             dotenv=None), clock=web.clock)
    yield create_app(runtime=rt, testing=True)
    rt.close()


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # addresses, not the database: one is enough
def test_x_forwarded_for_is_ignored_without_trusted_proxies_and_honoured_with_them(
        web: Web, behind_a_proxy: Flask) -> None:
    # Without the setting a client choosing a new X-Forwarded-For each time is still its own address.
    client = web.client()
    statuses = [_attempt(client, web.world.staff, f"wrong {i}", "198.51.100.5", f"203.0.113.{i}").status_code
                for i in range(FREE_FAILURES + 1)]
    assert statuses == [200] * FREE_FAILURES + [429]
    assert _attempt(client, web.world.lead, PASSWORD, "198.51.100.5", "192.0.2.1").status_code == 302
    assert _signed_in_clients(web) == [client_digest("198.51.100.5")]

    # Behind one trusted proxy (every request comes from 10.0.0.2) each real client is counted apart ...
    proxied = behind_a_proxy.test_client()
    statuses = [_attempt(proxied, web.world.other_staff, f"wrong {i}", "10.0.0.2", f"203.0.113.{i}").status_code
                for i in range(FREE_FAILURES + 1)]
    assert statuses == [200] * (FREE_FAILURES + 1)
    statuses = [_attempt(proxied, web.world.other_staff, f"wrong {i}", "10.0.0.2", "203.0.113.99").status_code
                for i in range(FREE_FAILURES + 1)]
    assert statuses == [200] * FREE_FAILURES + [429]
    # ... and what a client put in front of the proxy's own entry is not believed.
    response = _attempt(proxied, web.world.auditor, PASSWORD, "10.0.0.2", "10.9.9.9, 192.0.2.77")
    assert response.status_code == 302
    assert _signed_in_clients(web)[-1] == client_digest("192.0.2.77")
    out = proxied.post("/sign-out", data={"csrf_token": csrf_token(proxied.get(
        "/", environ_base={"REMOTE_ADDR": "10.0.0.2"}, headers={"X-Forwarded-For": "192.0.2.77"},
        follow_redirects=True).get_data(as_text=True))}, environ_base={"REMOTE_ADDR": "10.0.0.2"},
        headers={"X-Forwarded-For": "192.0.2.77"})
    assert out.status_code == 302
    assert web.database.raw("SELECT kind, client_hash FROM access_log WHERE kind = 'signed_out'")[0].client_hash \
        == client_digest("192.0.2.77")
