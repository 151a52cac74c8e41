"""The access log, seen and checked: the page administrators and auditors share (filters, pages, words),
its CSV download (itself logged), who sees which entries, refusals; the sweep that seals its days, and
``reprisals audit verify`` / ``audit log`` over it.

The page tests share one database and world per module (and per database): they read, and the one that
downloads counts the entries it adds."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from reprisals import access_log
from reprisals.access_log import AccessDay, AccessEntry, record, verify_log
from reprisals.access_review import CSV_HEADER
from reprisals.config import load_settings
from reprisals.models import Case, Role, User
from reprisals.runtime import Runtime
from reprisals.services import open_case
from tests.conftest import DATABASES, Database
from tests.factories import CANARY_DESCRIPTION, CANARY_NAME, CANARY_NUMBER, case_data, cipher, make_user
from tests.web.conftest import Cli, Web, World, assert_refused, csrf_token, password_hash, settings_env
from web.app import create_app
from web.scheduler import run_sweep
from workflow.clock import FrozenClock

LONDON = ZoneInfo("Europe/London")


@dataclass
class Seed:
    ids: dict[str, int]  # user ids by world role, and "hmip_auditor"
    names: dict[int, str]
    hmip_auditor: str
    reference: str  # an IMB case (HMIP party)
    case_id: int
    other_reference: str  # a PPO case
    yesterday: datetime


def _seed(web: Web) -> Seed:
    """120 token entries (the oldest ids), then six, oldest first: an IMB lead signs in (3 days ago), views
    a case through the API (2 days ago), an admin changes an IMB staff member's role (yesterday), a PPO lead
    signs in and views a PPO case (today), the operator rotates keys (today). And an HMIP auditor."""
    w, now = web.world, web.clock.now()
    with web.database.session() as s:
        users = {u.email: u for u in s.scalars(sa.select(User))}
        ids = {role: users[getattr(w, role)].id for role in ("lead", "staff", "outside_lead", "auditor", "admin")}
        hmip = make_user(s, role=Role.AUDITOR, body="HMIP")
        hmip.password_hash = password_hash()
        imb = s.scalars(sa.select(Case).where(Case.reference == w.reported)).one()
        ppo = open_case(s, web.rt.engine, cipher(), users[w.outside_lead], now,
                        case_data(imb.establishment, party_bodies=[]))
        start = now - timedelta(days=5)
        for n in range(120):
            record(s, start + timedelta(seconds=n), "token_created", actor=ids["admin"], detail={"token": f"t{n:03d}"})
        yesterday = now - timedelta(days=1)
        record(s, now - timedelta(days=3), "signed_in", actor=ids["lead"], client="203.0.113.5")
        record(s, now - timedelta(days=2), "viewed_sensitive", actor=ids["lead"], via="api", case_id=imb.id,
               detail={"what": "identity"})
        record(s, yesterday, "role_changed", actor=ids["admin"], subject=ids["staff"], detail={"role": "lead"})
        record(s, now - timedelta(minutes=3), "signed_in", actor=ids["outside_lead"])
        record(s, now - timedelta(minutes=2), "viewed_sensitive", actor=ids["outside_lead"], case_id=ppo.id)
        record(s, now - timedelta(minutes=1), "keys_rotated", via="cli", detail={"values_re_encrypted": 8})
        names = dict(s.execute(sa.select(User.id, User.name)).all())
        seed = Seed({**ids, "hmip_auditor": hmip.id}, names, hmip.email, imb.reference, imb.id, ppo.reference,
                    yesterday)
        s.commit()
    return seed


@pytest.fixture(scope="module")
def site(shared_database: Database, shared_world: World, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[Web, Seed]]:
    with shared_database.engine.begin() as conn:
        conn.execute(sa.text("UPDATE users SET password_hash = :h"), {"h": password_hash()})
    clock = FrozenClock(datetime.now(UTC))
    env = settings_env(shared_database, tmp_path_factory.mktemp("access-log"))
    rt = Runtime.from_settings(load_settings(env, dotenv=None), clock=clock)
    web = Web(create_app(runtime=rt, testing=True), rt, clock, shared_database, shared_world)
    yield web, _seed(web)
    rt.close()


def _rows(html: str) -> list[list[str]]:
    """The entries table's cells, row by row, as text."""
    if 'id="entries"' not in html:
        return []
    body = html.split('id="entries"', 1)[1].split("</table>", 1)[0].split("<tbody", 1)[1]
    out = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S):
        cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
        out.append([re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", c)).strip() for c in cells])
    return out


def _date_args(name: str, d: datetime) -> list[tuple[str, str]]:
    day = d.astimezone(LONDON).date()
    return [(name, str(day.day)), (name, str(day.month)), (name, str(day.year))]


def _no_identity(text: str) -> None:
    for canary in (CANARY_NAME, CANARY_NUMBER, CANARY_DESCRIPTION, "Canarywhistle", "203.0.113"):
        assert canary not in text


def _seeded(rows: list[list[str]], seed: Seed, viewer: str) -> list[list[str]]:
    """The rows the seed made: not the sign-ins of the viewer or of the administrator the other tests sign in
    (the test client's own), nor downloads."""
    own = {seed.names[seed.ids[viewer]], seed.names[seed.ids["admin"]]}
    return [r for r in rows if not (r[1] == "Signed in" and r[2] in own)
            and r[1] not in ("Exported or downloaded", "API token created")]


def test_an_admin_sees_every_entry_newest_first_in_words_and_filters_and_pages_them(site: tuple[Web, Seed]) -> None:
    web, seed = site
    client = web.sign_in(web.world.admin)
    assert 'href="/access-log"' in client.get("/admin/").get_data(as_text=True)

    page = client.get("/access-log")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    keys, ppo_view, ppo_in, role, imb_view, imb_in = _seeded(_rows(html), seed, "admin")[:6]
    assert [r[1] for r in (keys, ppo_view, ppo_in, role, imb_view, imb_in)] == [
        "Encryption keys rotated", "Viewed sensitive content", "Signed in", "Role or body changed",
        "Viewed sensitive content", "Signed in"]
    assert keys[2:] == ["The operator", "", "", "Command line", "Values re encrypted: 8"]
    assert imb_view[2:] == [seed.names[seed.ids["lead"]], "", seed.reference, "API", "What: identity"]
    assert ppo_view[4:6] == [seed.other_reference, "Web page"]
    assert role[2:4] == [seed.names[seed.ids["admin"]], seed.names[seed.ids["staff"]]]
    assert f"/cases/{seed.reference}" not in html  # administrators see no case: a reference, not a link
    _no_identity(html)

    def shown(args: list[tuple[str, str]]) -> list[str]:
        response = client.get("/access-log?" + urlencode(args))
        assert response.status_code == 200, response.get_data(as_text=True)[:3000]
        return [f"{r[1]}|{r[4]}" for r in _seeded(_rows(response.get_data(as_text=True)), seed, "admin")]

    assert shown([("kind", "viewed_sensitive")]) == [f"Viewed sensitive content|{seed.other_reference}",
                                                     f"Viewed sensitive content|{seed.reference}"]
    assert shown([("case", seed.reference.lower())]) == [f"Viewed sensitive content|{seed.reference}"]
    # A person is whoever acted or was acted on.
    assert shown([("person", str(seed.ids["staff"]))]) == ["Role or body changed|"]
    assert shown([("person", str(seed.ids["lead"]))]) == [f"Viewed sensitive content|{seed.reference}",
                                                          "Signed in|"]
    day = seed.yesterday.astimezone(LONDON).date()
    dates = _date_args("since", seed.yesterday) + _date_args("until", seed.yesterday)
    that_day = _rows(client.get("/access-log?" + urlencode(dates)).get_data(as_text=True))
    assert "Role or body changed" in [r[1] for r in that_day]
    assert all(r[0].startswith(f"{day.day} {day:%b %Y} ") for r in that_day), that_day

    # Fifty a page, newest first; the filters stay in the page links.
    first = client.get("/access-log?kind=token_created").get_data(as_text=True)
    assert "120 entries match your filters" in first
    assert [r[6] for r in _rows(first)][:2] == ["Token: t119", "Token: t118"] and len(_rows(first)) == 50
    assert 'href="/access-log?kind=token_created&amp;page=3#results"' in first
    second = client.get("/access-log?kind=token_created&page=2").get_data(as_text=True)
    assert "Entries 51 to 100" in second and "(page 2 of 3)" in second
    assert _rows(second)[0][6] == "Token: t069"
    assert len(_rows(client.get("/access-log?kind=token_created&page=3").get_data(as_text=True))) == 20
    beyond = client.get("/access-log?kind=token_created&page=9").get_data(as_text=True)
    assert "There is no page 9: there are 3 pages. The first page is shown" in beyond  # as the case list does


def test_the_filters_refuse_bad_input_with_their_messages(site: tuple[Web, Seed]) -> None:
    web, _ = site
    client = web.sign_in(web.world.admin)
    future = web.clock.now() + timedelta(days=3)
    response = client.get("/access-log?" + urlencode([("kind", "peeked"), ("person", "99999"),
                                                      ("case", "RPR-1999-0001"), ("since", "31"), ("since", "2"),
                                                      ("since", "2026"), *_date_args("until", future)]))
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "<title>Error: Access log" in html
    for message in ("Select what happened from the list", "Select a person from the list",
                    "There is no case RPR-1999-0001 whose entries you can see", "The start date must be a real date",
                    "The end date must be today or in the past"):
        assert html.count(message) == 2, message  # in the summary and on its field
    assert 'href="#since-day"' in html and 'href="#case"' in html and "Traceback" not in html
    assert "Download" not in html  # no CSV of a refused filter
    earlier = _date_args("since", web.clock.now()) + _date_args("until", web.clock.now() - timedelta(days=2))
    assert "The end date must be the same as or after the start date" in client.get(
        "/access-log?" + urlencode(earlier)).get_data(as_text=True)
    with web.database.session() as s:
        before = access_log.count(s, kind="export")
    bad_csv = client.get("/access-log.csv?kind=peeked")
    assert bad_csv.status_code == 400 and bad_csv.mimetype == "text/html"
    with web.database.session() as s:
        assert access_log.count(s, kind="export") == before  # no file, no entry


def test_the_csv_download_has_the_filtered_entries_and_is_itself_logged(site: tuple[Web, Seed]) -> None:
    web, seed = site
    client = web.sign_in(web.world.admin)
    page = client.get("/access-log?kind=viewed_sensitive").get_data(as_text=True)
    assert 'href="/access-log.csv?kind=viewed_sensitive"' in page

    response = client.get("/access-log.csv?kind=viewed_sensitive")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert re.fullmatch(r'attachment; filename="reprisals-access-log-\d{4}-\d{2}-\d{2}\.csv"',
                        response.headers["Content-Disposition"])
    text = response.get_data(as_text=True)
    assert text.splitlines()[0] == ",".join(CSV_HEADER)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["What"], r["Kind"], r["Who"], r["Case"], r["Channel"]) for r in rows] == [
        ("Viewed sensitive content", "viewed_sensitive", seed.names[seed.ids["outside_lead"]], seed.other_reference,
         "Web page"),
        ("Viewed sensitive content", "viewed_sensitive", seed.names[seed.ids["lead"]], seed.reference, "API")]
    _no_identity(text)
    with web.database.session() as s:
        hashes = {e.hash for e in s.scalars(sa.select(AccessEntry).where(AccessEntry.kind == "viewed_sensitive"))}
        assert {r["Entry hash"] for r in rows} == hashes  # each can be checked against the database
        assert all(datetime.fromisoformat(r["When (UTC)"]).utcoffset() == timedelta(0) for r in rows)
        export = access_log.entries(s, kind="export", limit=1)[0]
        assert (export.actor_id, export.via, export.case_id, export.subject_user_id) == (
            seed.ids["admin"], "web", None, None)
        assert export.client_hash and export.detail == {"what": "access log", "kind": "viewed_sensitive", "entries": 2}

    # Filtered by case and person: the export entry is about them too, and the page lists it.
    by_case = client.get(f"/access-log.csv?case={seed.reference}&person={seed.ids['lead']}").get_data(as_text=True)
    assert len(list(csv.DictReader(io.StringIO(by_case)))) == 1
    with web.database.session() as s:
        latest = access_log.entries(s, kind="export", limit=1)[0]
        assert (latest.case_id, latest.subject_user_id) == (seed.case_id, seed.ids["lead"])
        assert latest.detail == {"what": "access log", "case": seed.reference, "entries": 1}
    listed = _rows(client.get(f"/access-log?kind=export&person={seed.ids['lead']}").get_data(as_text=True))
    assert [(r[1], r[2], r[3], r[4]) for r in listed] == [
        ("Exported or downloaded", seed.names[seed.ids["admin"]], seed.names[seed.ids["lead"]], seed.reference)]

    # The figures' CSV is an export too.
    auditor = web.sign_in(web.world.auditor)
    assert auditor.get("/reports/figures.csv?period=2025&body=IMB&counts=publish").status_code == 200
    with web.database.session() as s:
        figures = access_log.entries(s, kind="export", limit=1)[0]
        assert figures.actor_id == seed.ids["auditor"]
        assert figures.detail == {"what": "figures", "period": "1 January to 31 December 2025", "body": "IMB",
                                  "counts": "for publication"}
        assert verify_log(s).ok


def test_an_auditor_sees_their_bodys_cases_and_people_and_the_administrators_work(site: tuple[Web, Seed]) -> None:
    web, seed = site
    client = web.sign_in(web.world.auditor)
    assert 'href="/access-log"' in client.get("/").get_data(as_text=True)
    html = client.get("/access-log").get_data(as_text=True)
    # Not the PPO lead's sign-in nor their view of a PPO case; the operator's work and the admin's on IMB's staff.
    assert [(r[1], r[4]) for r in _seeded(_rows(html), seed, "auditor")] == [
        ("Encryption keys rotated", ""), ("Role or body changed", ""), ("Viewed sensitive content", seed.reference),
        ("Signed in", "")]
    outsider = seed.names[seed.ids["outside_lead"]]
    assert f">{outsider} (" not in html  # nor offered in the person filter
    assert f'href="/cases/{seed.reference}"' in html  # auditors may open their body's cases
    _no_identity(html)
    refused = client.get(f"/access-log?case={seed.other_reference}")  # another body's case: as if none
    assert refused.status_code == 400
    assert f"There is no case {seed.other_reference} whose entries you can see" in refused.get_data(as_text=True)
    text = client.get("/access-log.csv?kind=viewed_sensitive").get_data(as_text=True)
    assert seed.other_reference not in text and seed.reference in text

    # HMIP is party to the IMB case: its auditor sees that case's entries, not IMB's people.
    hmip = web.sign_in(seed.hmip_auditor).get("/access-log").get_data(as_text=True)
    mine = _seeded(_rows(hmip), seed, "hmip_auditor")
    assert [(r[1], r[4]) for r in mine] == [("Encryption keys rotated", ""),
                                            ("Viewed sensitive content", seed.reference)]

    for who in ("staff", "lead"):
        other = web.sign_in(getattr(web.world, who))
        assert other.get("/access-log").status_code == 403
        assert other.get("/access-log.csv").status_code == 403
        assert 'href="/access-log"' not in other.get("/").get_data(as_text=True)


# -- sealing by the sweep, and the command ------------------------------------------------------------


def test_the_sweep_seals_finished_days_and_audit_verify_finds_a_tampered_log(
        run: Cli, database: Database, tmp_path: Path) -> None:
    rt = Runtime.from_settings(load_settings(settings_env(database, tmp_path), dotenv=None))
    midnight = datetime.combine(datetime.now(UTC).date(), time(0), UTC)
    yesterday, before = (midnight - timedelta(days=1)).date(), (midnight - timedelta(days=2)).date()
    with database.session() as s:
        first = record(s, midnight - timedelta(days=2), "signed_out", actor=None).id
        record(s, midnight - timedelta(seconds=1), "signed_in", actor=None, detail={"account": "x"})
        record(s, midnight + timedelta(minutes=1), "signed_in", actor=None)
        s.commit()

    def sealed() -> list[tuple[object, int]]:
        with database.session() as s:
            return [(d.day, d.entries) for d in s.scalars(sa.select(AccessDay).order_by(AccessDay.day))]

    try:
        # Ten minutes after midnight a request that took its moment at 23:59:59 may still be committing.
        run_sweep(rt, midnight + timedelta(minutes=10))
        assert sealed() == [(before, 1)]
        run_sweep(rt, midnight + timedelta(minutes=20))
        assert sealed() == [(before, 1), (yesterday, 1)]  # today's entry waits for today to end
        run_sweep(rt, midnight + timedelta(minutes=30))
        assert sealed() == [(before, 1), (yesterday, 1)]
    finally:
        rt.close()

    ok = run("audit", "verify")
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.splitlines()[-1] == "access log verified: 3 entries, 2 sealed days, no broken links"

    listed = run("audit", "log", "--kind", "signed_in")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[-1] == "2 of 2 entries shown, newest first"
    assert "Signed in — Nobody signed in (web page): Account: x" in lines[1]
    as_csv = run("audit", "log", "--format", "csv", "--from", before.isoformat(), "--to", yesterday.isoformat())
    assert as_csv.exit_code == 0, as_csv.output
    assert as_csv.stdout.splitlines()[0] == ",".join(CSV_HEADER) and len(as_csv.stdout.splitlines()) == 3
    with database.session() as s:
        export = access_log.entries(s, kind="export")[0]
        assert (export.via, export.actor_id) == ("cli", None)
        assert export.detail == {"what": "access log", "from": before.isoformat(), "to": yesterday.isoformat(),
                                 "entries": 2}
    assert_refused(run("audit", "log", "--case", "RPR-1999-0001"),
                   "error: --case: There is no case RPR-1999-0001 whose entries you can see")
    assert_refused(run("audit", "log", "--from", "2026-03-02", "--to", "2026-03-01"),
                   "error: --to: must be the same day as --from or after it")

    database.disable_append_only()
    database.raw(f"UPDATE access_log SET kind = 'signed_in' WHERE id = {first}")
    database.raw(f"DELETE FROM access_log WHERE day = '{yesterday.isoformat()}'")
    broken = run("audit", "verify")
    assert broken.exit_code == 1
    assert broken.stdout.startswith("history verified: ")  # the history is untouched
    problems = broken.stderr.splitlines()
    assert problems[-1] == "access log NOT verified: 2 problem(s) in 3 entries, 2 sealed days"
    assert problems[:-1] == [
        f"BROKEN: access log: entry {first} of {before.isoformat()} does not match its hash (edited)",
        f"BROKEN: access log: the entries of {yesterday.isoformat()} are not the 1 sealed (found 0: entries removed, "
        "added or edited)"]
    report = json.loads(run("audit", "verify", "--json").stdout)
    assert report["ok"] is False and report["findings"] == []
    assert report["access_log"]["ok"] is False and len(report["access_log"]["problems"]) == 2


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)
def test_an_admin_sees_failed_sign_ins_counted_per_account_never_an_address(web: Web) -> None:
    # Four wrong passwords for the lead from two addresses, and two for an address that is no account.
    for n, (email, address) in enumerate([(web.world.lead, "198.51.100.7")] * 3 + [(web.world.lead, "203.0.113.9")]
                                         + [("nobody@example.test", "198.51.100.7")] * 2):
        client = web.client()
        client.environ_base["REMOTE_ADDR"] = address
        page = client.get("/sign-in").get_data(as_text=True)
        wrong = client.post("/sign-in", data={"email": email, "password": f"wrong-{n}",
                                              "csrf_token": csrf_token(page)})
        assert wrong.status_code == 200
    html = web.sign_in(web.world.admin).get("/access-log").get_data(as_text=True)
    section = html.split('id="failed-sign-ins"', 1)[1].split('id="results"', 1)[0]
    rows = [re.sub(r"<[^>]+>", "|", r).split("|") for r in re.findall(r"<tr class=\"govuk-table__row\">(.*?)</tr>",
                                                                        section, re.S)[1:]]
    cells = [[c.strip() for c in r if c.strip()] for r in rows]
    lead = web.database.raw("SELECT name FROM users WHERE email = :e", e=web.world.lead)[0].name
    assert [c[:4] for c in cells] == [[f"{lead} ({web.world.lead})", "4", "0", "2"],
                                      ["Addresses that are not an account", "2", "0", "1"]]
    assert "198.51.100" not in html and "nobody@example.test" not in html
    auditor = web.sign_in(web.world.auditor).get("/access-log").get_data(as_text=True)
    assert 'id="failed-sign-ins"' not in auditor  # administrators only
