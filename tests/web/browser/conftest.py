"""Browser tests: Playwright driving Debian's Chromium (``/usr/bin/chromium``) against the real app
served by Werkzeug on a loopback port, on SQLite and PostgreSQL.

Every page a journey visits goes through :func:`check_page` (via :meth:`Pages.check`): the page must not
scroll sideways (WCAG 2.2 1.4.10, Reflow), axe-core must report no violation of any impact level (the
``region`` rule included: all content inside landmarks), and a full-page screenshot is saved under
``artifacts/screenshots/`` (an artefact of the run, never committed), named by page and width.

Modules that set ``CHECK_AT_375 = True`` (the journeys, the pages pass) check every page twice: at
1280 px, then at 375 px on the same page load, then back to 1280 px (decision 33). Other tests can call
``check_page(page, name)`` at whatever width their page is.

The markup does not depend on the database, and axe-core costs about a second a page on a loaded
machine: it runs on the first database of the run (SQLite unless ``REPRISALS_TEST_DATABASES`` says
otherwise). On the others the journeys run in full, every assertion included, but without axe-core
and screenshots. ``REPRISALS_TEST_AXE_EVERY_DATABASE=1`` runs it on every database.

``REPRISALS_TEST_PAGE_PROBLEMS=FILE`` is for surveying, never for a passing run: :meth:`Pages.check`
then appends what it finds to FILE and carries on, so one run lists every page's problems (at both
widths) instead of stopping at the first.
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
from playwright.sync_api import Browser, Page, Playwright, ViewportSize, sync_playwright
from werkzeug.serving import BaseWSGIServer, make_server

from tests.conftest import DATABASES
from tests.web.conftest import PASSWORD, Web

CHROMIUM = os.environ.get("REPRISALS_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[3] / "artifacts" / "screenshots"
# The closed network refuses Chromium's background connections: keep it from trying.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDE: ViewportSize = {"width": 1280, "height": 900}
NARROW: ViewportSize = {"width": 375, "height": 800}  # an iPhone's width in CSS pixels (WCAG 1.4.10 asks for 320)
# axe-core's defaults, with the best-practice "region" rule named so that no default can drop it.
# Every violation fails, whatever its impact (minor, moderate, serious, critical).
AXE_OPTIONS: dict[str, Any] = {"resultTypes": ["violations"], "rules": {"region": {"enabled": True}}}
AXE_EVERY_DATABASE = os.environ.get("REPRISALS_TEST_AXE_EVERY_DATABASE", "") == "1"
PAGE_PROBLEMS = os.environ.get("REPRISALS_TEST_PAGE_PROBLEMS", "")


# The elements that make the page wider than the window: each sticks out while its parent does not
# (the cause, not its descendants), outside any box that scrolls or clips on its own.
_TOO_WIDE_JS = """() => {
  const limit = window.innerWidth;
  const describe = (el) => {
    const parts = [];
    for (let e = el; e && e !== document.body && parts.length < 3; e = e.parentElement) {
      let part = e.tagName.toLowerCase();
      if (e.id) { parts.unshift(part + "#" + e.id); break; }
      if (e.classList.length) part += "." + [...e.classList].slice(0, 2).join(".");
      parts.unshift(part);
    }
    return parts.join(" > ");
  };
  const clipped = (el) => {
    for (let e = el.parentElement; e && e !== document.body; e = e.parentElement) {
      if (getComputedStyle(e).overflowX !== "visible") return true;
    }
    return false;
  };
  const found = [];
  for (const el of document.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    if (box.right <= limit + 0.5 || box.width === 0) continue;
    const parent = el.parentElement.getBoundingClientRect();
    if (parent.right > limit + 0.5 && el.parentElement !== document.body) continue;
    if (clipped(el)) continue;
    found.push({selector: describe(el), width: Math.round(box.width), right: Math.round(box.right)});
  }
  found.sort((a, b) => b.right - a.right);
  return {scrollWidth: document.documentElement.scrollWidth, innerWidth: limit, found: found.slice(0, 3)};
}"""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _axe(page: Page) -> dict[str, Any]:
    """axe-core's results on the page as it is now (injected once per document: a second width of the
    same page load reuses it)."""
    from axe_playwright_python.base import AXE_SCRIPT

    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_SCRIPT)
    results: dict[str, Any] = page.evaluate("(options) => axe.run(document, options)", AXE_OPTIONS)
    return results


def _kept_by_govuk_frontend(rule: str, html: str) -> bool:
    """The one finding GOV.UK Frontend keeps on purpose: ``aria-expanded`` on a radio that reveals a question
    (alphagov/govuk-frontend #979, kept for screen readers; decision 31). Only on such radios."""
    return rule == "aria-allowed-attr" and "aria-expanded" in html and "govuk-radios__input" in html


def check_page(page: Page, name: str) -> dict[str, Any]:
    """Check the page at the window's current width; return axe-core's results.

    - it does not scroll sideways: ``document.documentElement.scrollWidth <= window.innerWidth``; if it
      does, the message names the widest elements that stick out (selector, width, right edge);
    - axe-core reports no violation of any impact level, the ``region`` rule included;
    - a full-page screenshot is saved as ``artifacts/screenshots/<name>-<width>px.png``.

    Both checks are reported together in one ``AssertionError``. ``name`` says which page it is
    (``"lead-case-list"``); it need not be unique across tests but should be within one.
    """
    page.wait_for_load_state()
    width = page.evaluate("() => window.innerWidth")
    problems = []
    wide = page.evaluate(_TOO_WIDE_JS)
    if wide["scrollWidth"] > wide["innerWidth"]:
        culprits = "; ".join(f"{f['selector']} ({f['width']} px wide, right edge at {f['right']} px)"
                             for f in wide["found"]) or "no single element found"
        problems.append(f"scrolls sideways: {wide['scrollWidth']} px wide in a {wide['innerWidth']} px window "
                        f"(WCAG 1.4.10) — {culprits}")
    results = _axe(page)
    for v in results["violations"]:
        nodes = [n for n in v["nodes"] if not _kept_by_govuk_frontend(v["id"], n["html"])]
        if nodes:
            problems.append(f"axe {v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in nodes][:3]}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{_slug(name)}-{width}px.png"), full_page=True)
    if problems:  # raised, not asserted: pytest's diff of the list would repeat it, cut short
        raise AssertionError(f"'{name}' at {width} px ({page.url}):\n  " + "\n  ".join(problems))
    return results


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
    at_375: bool = False  # check every page at 375 px too (decision 33)
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
        """:func:`check_page` on the current page; with ``at_375``, again at 375 px on the same page
        load, then back to the width it had. Problems at both widths are reported together."""
        self.page.wait_for_load_state()
        if self.live is not None and not self.live.audited:
            self.checked.append(label)
            return {}
        name = f"{self.name}-{len(self.checked):02d}-{label}"
        self.checked.append(label)
        failures: list[str] = []
        results: dict[str, Any] = {}
        try:
            results = check_page(self.page, name)
        except AssertionError as e:
            failures.append(str(e))
        size = self.page.viewport_size
        if self.at_375 and size is not None and size["width"] > NARROW["width"]:
            self.page.set_viewport_size(NARROW)
            try:
                check_page(self.page, name)
            except AssertionError as e:
                failures.append(str(e))
            finally:
                self.page.set_viewport_size(size)
        if failures and PAGE_PROBLEMS:
            with open(PAGE_PROBLEMS, "a", encoding="utf-8") as out:
                out.write("".join(f"{f}\n\n" for f in failures))
            return results
        if failures:
            raise AssertionError("\n".join(failures))
        return results


@pytest.fixture
def person(browser: Browser, live: Live, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``person("lead")`` opens a fresh browser context (its own cookies) named for screenshots; in a
    module with ``CHECK_AT_375 = True`` its pages are checked at 375 px as well as 1280 px."""
    contexts = []
    test = _slug(request.node.name)
    at_375 = bool(getattr(request.module, "CHECK_AT_375", False))

    def open_(who: str) -> Pages:
        ctx = browser.new_context(viewport=WIDE)
        contexts.append(ctx)
        return Pages(live, ctx.new_page(), f"{test}-{who}", at_375=at_375)

    yield open_
    for ctx in contexts:
        ctx.close()
