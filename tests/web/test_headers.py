"""Security headers on every page: a CSP without 'unsafe-inline', nosniff, frame denial, referrer policy;
no caching of signed-in pages; GOV.UK Frontend served from this site, not a CDN."""

from __future__ import annotations

import re
from pathlib import Path

from tests.factories import TEST_KEY, TEST_PSEUDONYM_KEY
from tests.web.conftest import SECRET_KEY, Web


def test_pages_carry_the_security_headers_and_a_strict_csp(web: Web) -> None:
    for path in ("/sign-in", "/healthz", "/does-not-exist"):
        response = web.client().get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "same-origin"


def test_the_only_inline_script_carries_the_per_request_nonce(web: Web) -> None:
    first = web.client().get("/sign-in")
    second = web.client().get("/sign-in")
    html = first.get_data(as_text=True)
    nonce = re.search(r"'nonce-([^']+)'", first.headers["Content-Security-Policy"]).group(1)  # type: ignore[union-attr]
    scripts = re.findall(r"<script([^>]*)>", html)
    inline = [s for s in scripts if "src=" not in s]
    assert inline == [f' nonce="{nonce}"']
    assert nonce not in second.headers["Content-Security-Policy"]
    assert "style=" not in html


def test_signed_in_pages_are_not_cached(web: Web) -> None:
    client = web.sign_in(web.world.lead)
    assert client.get("/").headers["Cache-Control"] == "no-store"


def test_assets_are_served_from_this_site(web: Web) -> None:
    html = web.client().get("/sign-in").get_data(as_text=True)
    assert "https://" not in re.sub(r'<a [^>]*>', "", html)  # no CDN
    css = web.client().get("/static/govuk/govuk-frontend.min.css")
    js = web.client().get("/static/govuk/govuk-frontend.min.js")
    assert css.status_code == js.status_code == 200
    assert b"@font-face" not in css.data  # system fonts: GDS Transport is for GOV.UK domains only


def test_hsts_is_sent_in_production_only(tmp_path: Path) -> None:
    from reprisals.config import load_settings
    from web.app import create_app

    production, development = (create_app(load_settings({
        "REPRISALS_ENV": env, "REPRISALS_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "REPRISALS_INSTANCE_PATH": str(tmp_path / "instance"), "REPRISALS_SECRET_KEY": SECRET_KEY,
        "REPRISALS_ENCRYPTION_KEYS": TEST_KEY, "REPRISALS_PSEUDONYM_KEY": TEST_PSEUDONYM_KEY}, dotenv=None),
        testing=True).test_client()
        for env in ("production", "development"))

    for path in ("/sign-in", "/does-not-exist", "/static/govuk/govuk-frontend.min.css"):
        assert production.get(path).headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
        assert "Strict-Transport-Security" not in development.get(path).headers
