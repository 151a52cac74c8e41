"""The leak scan (issue 12): canaries in every identity field of new cases and in every free-text field of
every action of the protocol, and in notes, reasons (identity views, assignments, deadline changes, date
corrections), override reasons and a recipient typed by hand — entered through the API, the pages and the
command. Then nothing of them in the database's own bytes (the SQLite file, a PostgreSQL dump), and, outside a
reader's unlock window, on no page any role reaches, in no API response, e-mail, in-app message, log line or
export. After an unlock, the owning lead does read them (the canaries are real)."""

from __future__ import annotations

import itertools
import logging
import re
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from reprisals.protocol import SPEC_KEY
from reprisals.services import LONDON
from tests.conftest import DATABASES, checkpoint_sqlite
from tests.factories import CANARY_DESCRIPTION, CANARY_NAME, CANARY_NUMBER
from tests.web.conftest import Cli, Web, csrf_token
from tests.web.test_api import Api
from web.scheduler import build_channels, run_delivery, run_sweep

_count = itertools.count(1)
PG_DUMP = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))), None)


class Canaries:
    """Unguessable strings, one per place they are typed into, remembered with that place."""

    def __init__(self) -> None:
        self.where: dict[str, str] = {CANARY_NAME: "identity: name", CANARY_NUMBER: "identity: number",
                                      "CANARYTEXT42": "description", "1987-03-14": "identity: date of birth"}

    def __call__(self, place: str) -> str:
        value = f"Qz{next(_count):03d}{re.sub(r'[^a-z]', '', place.lower())[:12]}Xv"
        self.where[value] = place
        return value

    def hits(self, text: str, source: str) -> list[str]:
        return [f"{self.where[c]} in {source}" for c in self.where if c in text]


def _free_text_fields(web: Web) -> dict[str, list[str]]:
    spec = web.rt.engine.spec(SPEC_KEY)
    return {name: [f for f, fs in t.fields.items() if fs.is_sensitive] for name, t in spec.triggers.items()}


class Driver:
    """Actions through the API (one user's token each), with a canary in every free-text field given."""

    def __init__(self, web: Web, canaries: Canaries) -> None:
        self.web, self.c = web, canaries
        self.free = _free_text_fields(web)
        self.apis: dict[str, Api] = {}
        self.done: set[str] = set()

    def api(self, email: str) -> Api:
        if email not in self.apis:
            self.apis[email] = Api(self.web, email)
        return self.apis[email]

    def open(self, email: str, **overrides: Any) -> str:
        body = {"establishment_id": self.web.world.establishment_id, "received_at": "2025-04-16T10:00:00+01:00",
                "channel": "imb_application", "age_group": "adult", "sanction_types": ["loss_of_job_or_activity"],
                "description": CANARY_DESCRIPTION, "risk": "standard", "party_bodies": ["HMIP"],
                "detainee_name": self.c("identity name"), "detainee_number": self.c("identity number")[:20],
                "detainee_date_of_birth": "1990-01-0" + str(next(_count) % 9 + 1), **overrides}
        response = self.api(email).post("/api/cases", body)
        assert response.status_code == 201, response.get_data(as_text=True)
        return str(response.get_json()["reference"])

    def act(self, email: str, ref: str, trigger: str, fields: dict[str, Any]) -> None:
        api = self.api(email)
        version = api.get(f"/api/cases/{ref}").get_json()["version"]
        given = {**fields, **{f: self.c(f"{trigger} {f}") for f in self.free[trigger] if f in fields}}
        response = api.post(f"/api/cases/{ref}/actions/{trigger}", {"expected_version": version, "fields": given})
        assert response.status_code == 200, (trigger, response.get_data(as_text=True))
        self.done.add(trigger)


def _drive(web: Web, run: Cli) -> tuple[Canaries, list[str]]:
    c = Canaries()
    d = Driver(web, c)
    w = web.world
    hoe = {"recipients": ["head_of_establishment"]}
    refs = []

    # An urgent case without consent, disclosed on an override, the whole way round and back.
    a = d.open(w.lead, risk="urgent")
    refs.append(a)
    d.act(w.lead, a, "record_consent_and_risk", {"consent": "none", "risk": "urgent", "risk_reason": 1})
    d.act(w.lead, a, "refer", {**hoe, "override_ground": "risk_to_life", "override_reason": 1})
    d.act(w.lead, a, "confirm_contact", {"contact_with": 1, "note": 1})
    d.act(w.lead, a, "change_consent", {"consent": "full", "reason": 1})
    web.clock.advance(timedelta(days=40))  # the written response is overdue
    d.act(w.lead, a, "escalate", {"reason": "overdue", "recipient": "other", "recipient_other": 1, "note": 1})
    d.act(w.lead, a, "record_response", {"responder": "central_authority", "summary": 1})
    d.act(w.lead, a, "accept_response", {"proposed_finding": "substantiated", "assessment": 1})
    d.act(w.lead, a, "complete_follow_up", {"summary": 1})
    d.act(w.second_lead, a, "send_back", {"reason": 1})
    d.act(w.lead, a, "accept_response", {"proposed_finding": "substantiated", "assessment": 1})
    d.act(w.lead, a, "further_detriment", {"summary": 1})
    d.act(w.lead, a, "refer", hoe)
    d.act(w.lead, a, "record_response", {"responder": "establishment", "summary": 1})
    d.act(w.lead, a, "reject_response", {"reason": 1, "recipient": "other", "recipient_other": 1})
    d.act(w.lead, a, "record_response", {"responder": "department", "summary": 1})
    d.act(w.lead, a, "accept_response", {"proposed_finding": "not_substantiated", "assessment": 1})
    d.act(w.lead, a, "complete_follow_up", {"summary": 1})
    d.act(w.lead, a, "close", {"outcome": "not_substantiated", "summary": 1})
    d.act(w.lead, a, "reopen", {"reason": 1})
    d.act(w.lead, a, "withdraw", {"reason": 1})
    # Declined, recorded only, left custody.
    for trigger, fields, consent in (("decline", {"reason": 1, "referred_to": 1}, "anonymous"),
                                     ("record_only", {"reason": 1}, "none"), ("left_custody", {"note": 1}, "full")):
        ref = d.open(w.lead)
        refs.append(ref)
        d.act(w.lead, ref, "record_consent_and_risk", {"consent": consent, "risk": "standard"})
        d.act(w.lead, ref, trigger, fields)
    missing = set(d.free) - d.done
    assert not missing, f"actions the scan did not use: {sorted(missing)}"

    # Through the pages: a note, an unlock's reason, an assignment's reason, a deadline's extension.
    b = d.open(w.lead)
    refs.append(b)
    d.act(w.lead, b, "record_consent_and_risk", {"consent": "full", "risk": "high", "risk_reason": 1})
    d.act(w.lead, b, "refer", hoe)
    lead = web.sign_in(w.lead)
    for path, data in ((f"/cases/{b}/notes", {"note": c("note")}),
                       (f"/cases/{b}/identity", {"reason": c("unlock reason")})):
        page = lead.get(f"/cases/{b}").get_data(as_text=True)
        response = lead.post(path, data={**_hidden(page), **data, "csrf_token": csrf_token(page)})
        assert response.status_code == 302, (path, response.get_data(as_text=True)[-1500:])
    staff_id = web.database.raw("SELECT id FROM users WHERE email = :e", e=w.staff)[0].id
    day = web.clock.now().astimezone(LONDON).date()
    for path, data in ((f"/cases/{b}/assign", {"assignee": str(staff_id), "reason": c("assignment reason")}),
                       (f"/cases/{b}/events/3/date", {"occurred_on": [str(day.day), str(day.month), str(day.year)],
                                                      "reason": c("correction reason")})):
        page = lead.get(path).get_data(as_text=True)
        response = lead.post(path, data={**_hidden(page), **data, "csrf_token": csrf_token(page)})
        assert response.status_code == 302, (path, response.get_data(as_text=True)[-1500:])
    # Through the command: an identity view's reason, a correction's reason, a deadline's extension.
    cal = web.rt.timers.calendar("england")  # an extension ends on a working day
    later = cal.end_of(cal.next_working_day((web.clock.now() + timedelta(days=60)).astimezone(LONDON).date()))
    extend = run("deadlines", "extend", b, "establishment_response", "--to", later.isoformat(),
                 "--reason", c("extension reason"), "--as", w.lead)
    assert extend.exit_code == 0, extend.output
    shown = run("case", "show", b, "--as", w.lead, "--reason", c("command unlock reason"))
    assert shown.exit_code == 0, shown.output
    web.clock.advance(timedelta(hours=1))  # every window is over
    return c, refs


def _hidden(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input[^>]*name="(expected_version|seen_seq)"[^>]*value="(\d+)"', html))


def _database_bytes(web: Web) -> str:
    db = web.database
    if db.dialect == "sqlite":
        path = Path(db.engine.url.database or "")
        db.engine.dispose()
        checkpoint_sqlite(path)
        return path.read_bytes().decode("latin-1") + "".join(
            p.read_bytes().decode("latin-1") for p in path.parent.glob(path.name + "-*"))
    assert PG_DUMP is not None, "pg_dump is part of the machine's PostgreSQL"
    url = db.engine.url
    out = subprocess.run([str(PG_DUMP), "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-U",
                          url.username or "postgres", "--data-only", url.database or ""],
                         capture_output=True, check=True, timeout=60)
    return out.stdout.decode("utf-8", "replace")


def test_nothing_typed_is_in_the_databases_own_bytes(web: Web, run: Cli) -> None:
    canaries, _ = _drive(web, run)
    assert canaries.hits(_database_bytes(web), f"the {web.database.dialect} database") == []


def _crawl(client: FlaskClient, start: list[str], limit: int = 400) -> Iterator[tuple[str, str]]:
    seen: set[str] = set()
    queue = list(start)
    while queue and len(seen) < limit:
        path = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        response = client.get(path)
        text = response.get_data(as_text=True)
        yield path, text
        if response.mimetype != "text/html":
            continue
        for href in re.findall(r'href="([^"#]+)', text):
            target = urljoin(path, href.replace("&amp;", "&"))
            parts = urlsplit(target)
            if parts.netloc or not parts.path.startswith("/") or parts.path.startswith("/static/"):
                continue
            if parts.path in ("/sign-out",) or "/actions/" in parts.path:
                continue
            queue.append(parts.path + (f"?{parts.query}" if parts.query else ""))


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)
def test_nothing_typed_is_shown_outside_an_unlock_window(web: Web, run: Cli,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    canaries, refs = _drive(web, run)
    hits: list[str] = []
    pages = 0
    w = web.world
    # Every page each role reaches from its home (cases, their histories and letters, lists, inbox,
    # figures and their downloads, administration, the access log).
    for email in (w.lead, w.second_lead, w.staff, w.auditor, w.admin, w.outside_lead):
        client = web.sign_in(email)
        start = ["/", "/cases/", "/inbox/", "/reports/", "/access-log", "/admin/", "/account/",
                 *(f"/cases/{r}" for r in refs)]
        for path, text in _crawl(client, start):
            hits += canaries.hits(text, f"{path} as {email}")
            pages += 1
    # The API, as each role with a token.
    for email in (w.lead, w.staff, w.auditor):
        api = Api(web, email)
        for path in ["/api/cases", *(f"/api/cases/{r}" for r in refs), "/api/openapi.json"]:
            hits += canaries.hits(api.get(path).get_data(as_text=True), f"API {path} as {email}")
    # E-mails and in-app messages, after the sweep and delivery.
    run_sweep(web.rt)
    run_delivery(web.rt, build_channels(web.rt.settings))
    with web.database.engine.connect() as conn:
        for table in ("outbox", "inbox_items"):
            for row in conn.execute(sa.text(f"SELECT * FROM {table}")):
                hits += canaries.hits(repr(tuple(row)), table)
    # The command's outputs without a reason, and the exports.
    for args in (["case", "show", refs[0], "--as", w.lead, "--history", "--json"], ["audit", "verify"],
                 ["audit", "log", "--format", "csv"],
                 ["report", "figures", "--period", "2000-01-01..2100-12-31", "--format", "json"]):
        result = run(*args)
        hits += canaries.hits(result.output, "reprisals " + " ".join(args[:2]))
    hits += canaries.hits("\n".join(r.getMessage() for r in caplog.records), "the application's log")
    assert hits == []
    assert pages > 100  # the crawl reached the cases' pages, histories, forms and downloads

    # The canaries are real: inside an unlock window the owning lead reads them.
    lead = web.sign_in(w.lead)
    page = lead.get(f"/cases/{refs[0]}").get_data(as_text=True)
    unlocked = lead.post(f"/cases/{refs[0]}/identity", data={"reason": "Writing to the governor",
                                                            "csrf_token": csrf_token(page)})
    assert unlocked.status_code == 302
    shown = "".join(lead.get(f"/cases/{refs[0]}{tab}").get_data(as_text=True)
                    for tab in ("", "/timeline", "/notes", "/deadlines"))  # the case page's tabs
    assert len(canaries.hits(shown, "the unlocked case page")) >= 10
