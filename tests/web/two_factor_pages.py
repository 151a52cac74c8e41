"""Setting up two-factor sign-in through its page, as a person would, for tests that need a session
that gave its second factor (the code is computed with pyotp from the secret the page shows)."""

from __future__ import annotations

import re
from typing import Any

import pyotp
from flask.testing import FlaskClient

from tests.web.conftest import Web, csrf_token

SECRET = re.compile(r'id="secret">([A-Z2-7 ]+)<')
CODES = re.compile(r"<li><code>([A-Z0-9-]{19})</code></li>")


def enrol(web: Web, client: FlaskClient, **kw: Any) -> tuple[str, list[str]]:
    """Set up two-factor sign-in through the page; returns the secret and the recovery codes."""
    page = client.get("/two-factor/set-up", **kw)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    found = SECRET.search(html)
    assert found, "no secret shown as text"
    secret = found.group(1).replace(" ", "")
    assert "<svg" in html and 'role="img"' in html and "style=" not in html.split("<svg", 1)[1].split("</svg>")[0]
    done = client.post("/two-factor/set-up", data={"code": pyotp.TOTP(secret).at(web.clock.now()),
                                                   "csrf_token": csrf_token(html)}, **kw)
    assert done.status_code == 200, done.get_data(as_text=True)[:2000]
    codes = CODES.findall(done.get_data(as_text=True))
    assert len(codes) == 10 and len(set(codes)) == 10
    return secret, codes
