"""Browser tests: Playwright driving Debian's Chromium (``/usr/bin/chromium``) against the real app
served by Werkzeug on a loopback port, on SQLite and PostgreSQL.

Every page a journey visits goes through :func:`Pages.check`: axe-core runs on it (no serious or
critical violation allowed) and a full-page screenshot is saved under ``artifacts/screenshots/``
(an artefact of the run, never committed).

The markup does not depend on the database, and axe-core costs about a second a page on a loaded
machine: it runs on the first database of the run (SQLite unless ``REPRISALS_TEST_DATABASES`` says
otherwise). On the others the journeys run in full, every assertion included, but without axe-core
and screenshots. ``REPRISALS_TEST_AXE_EVERY_DATABASE=1`` runs it on every database.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright
from werkzeug.serving import BaseWSGIServer, make_server

from tests.conftest import DATABASES
from tests.web.conftest import PASSWORD, Web

CHROMIUM = os.environ.get("REPRISALS_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[3] / "artifacts" / "screenshots"
# The closed network refuses Chromium's background connections: keep it from trying.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BLOCKING = ("minor", "moderate", "serious", "critical")  # every impact level
AXE_EVERY_DATABASE = os.environ.get("REPRISALS_TEST_AXE_EVERY_DATABASE", "") == "1"


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield b
    b.close()


@dataclass
class Live:
    web: Web
    url: str
    server: BaseWSGIServer

    @property
    def audited(self) -> bool:
        """Whether pages are put through axe-core (and photographed) on this database."""
        return AXE_EVERY_DATABASE or self.web.database.dialect == DATABASES[0]


@pytest.fixture
def live(web: Web) -> Iterator[Live]:
    server = make_server("127.0.0.1", 0, web.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Live(web, f"http://127.0.0.1:{server.server_port}", server)
    server.shutdown()
    thread.join(5)


@dataclass
class Pages:
    """A browser context for one person, with the checks every page must pass."""

    live: Live
    page: Page
    name: str
    checked: list[str] = field(default_factory=list)

    def go(self, path: str) -> Page:
        self.page.goto(self.live.url + path)
        return self.page

    def sign_in(self, email: str, password: str = PASSWORD, *, check: bool = True) -> None:
        """Sign in through the form (``check=False``: the sign-in page was checked already)."""
        self.go("/sign-in")
        if check:
            self.check("sign-in")
        self.page.get_by_label("Email address").fill(email)
        self.page.get_by_label("Password", exact=True).fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_load_state()

    def check(self, label: str) -> dict[str, Any]:
        """axe-core on the current page (no serious/critical violations) and a screenshot."""
        from axe_playwright_python.sync_playwright import Axe

        self.page.wait_for_load_state()
        if self.live is not None and not self.live.audited:
            self.checked.append(label)
            return {}
        results = Axe().run(self.page)
        bad = [f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
               for v in results.response["violations"] if v.get("impact") in BLOCKING]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^a-z0-9]+", "-", f"{self.name}-{len(self.checked):02d}-{label}".lower()).strip("-")
        self.page.screenshot(path=str(ARTIFACTS / f"{slug}.png"), full_page=True)
        self.checked.append(label)
        assert bad == [], f"accessibility problems on '{label}' ({self.page.url}):\n" + "\n".join(bad)
        response: dict[str, Any] = results.response
        return response


@pytest.fixture
def person(browser: Browser, live: Live, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``person("lead")`` opens a fresh browser context (its own cookies) named for screenshots."""
    contexts = []
    test = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())

    def open_(who: str) -> Pages:
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(ctx)
        return Pages(live, ctx.new_page(), f"{test}-{who}")

    yield open_
    for ctx in contexts:
        ctx.close()
