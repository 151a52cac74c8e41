"""Pseudonyms on the pages (issue 13): auditors and party bodies see "Person P-…" and the same person's other
cases, never the name; the owning leads confirm or dismiss a possible match and correct a typo (the person
keeps the pseudonym); the commands link records and make the key; production refuses to start without it."""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa

from reprisals.config import load_settings
from reprisals.models import Case, Role, User
from reprisals.services import open_case
from tests.conftest import ONE_DATABASE
from tests.factories import CANARY_DOB, CANARY_NAME, CANARY_NUMBER, case_data, make_user
from tests.web.conftest import Cli, Web, assert_refused, password_hash, settings_env

PSEUDONYM = re.compile(r"Person (P-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})")
REASON = "Checking two reports"


def _person(html: str) -> str:
    found = PSEUDONYM.search(html)
    assert found, "no pseudonym on the page"
    return found.group(1)


def _section(html: str) -> str:
    return html.split('id="person"', 1)[1].split('id="actions"', 1)[0]


def _user(web: Web, email: str) -> User:
    with web.database.session() as s:
        return s.scalars(sa.select(User).where(User.email == email)).one()


def _open(web: Web, **overrides: str) -> str:
    with web.database.session() as s:
        lead = s.scalars(sa.select(User).where(User.email == web.world.lead)).one()
        staff = s.scalars(sa.select(User).where(User.email == web.world.staff)).one()
        case = open_case(s, web.rt.engine, web.rt.cipher, lead, web.clock.now(),
                         case_data(s.get(Case, 1).establishment, assigned_user_id=staff.id, **overrides))
        s.commit()
        return case.reference


def _party_lead(web: Web) -> str:
    with web.database.session() as s:
        user = make_user(s, role=Role.LEAD, body="HMIP")
        user.password_hash = password_hash()
        s.commit()
        return user.email


@ONE_DATABASE
def test_auditors_and_party_leads_see_the_pseudonym_and_the_other_cases_never_the_name(web: Web) -> None:
    reported, triaged = web.world.reported, web.world.triaged  # the same canary person, both
    for email in (web.world.auditor, _party_lead(web), web.world.lead):
        page = web.sign_in(email).get(f"/cases/{reported}").get_data(as_text=True)
        section = _section(page)
        assert _person(section) and f'href="/cases/{triaged}"' in section
        for secret in (CANARY_NAME, CANARY_NUMBER, CANARY_DOB, "Canarywhistle"):
            assert secret not in page
    auditor = web.sign_in(web.world.auditor)
    assert _person(auditor.get(f"/cases/{reported}").get_data(as_text=True)) == \
        _person(auditor.get(f"/cases/{triaged}").get_data(as_text=True))
    other = _open(web, detainee_name="Someone Else", detainee_number="", detainee_date_of_birth="")
    html = _section(auditor.get(f"/cases/{other}").get_data(as_text=True))
    assert "No other case of this person that you can see" in html
    assert "Correct" not in html  # auditors do not correct identity
    assert auditor.get(f"/cases/{other}/identity/correct").status_code == 403


def test_a_lead_confirms_or_dismisses_a_possible_match_on_the_page(web: Web) -> None:
    first = _open(web, detainee_name="Ada Quill", detainee_number="", detainee_date_of_birth="")
    second = _open(web, detainee_name="Quill Ada", detainee_number="", detainee_date_of_birth="")
    auditor = web.sign_in(web.world.auditor)
    assert "Possibly the same person" not in auditor.get(f"/cases/{second}").get_data(as_text=True)
    lead = web.sign_in(web.world.lead)
    page = lead.get(f"/cases/{second}").get_data(as_text=True)
    assert f"Possibly the same person as <a class=\"govuk-link\" href=\"/cases/{first}\">{first}</a>" in page
    assert _person(page) != _person(lead.get(f"/cases/{first}").get_data(as_text=True))
    match_id = re.search(r'action="/cases/[^/]+/people/(\d+)"', page).group(1)  # type: ignore[union-attr]

    done = web.post(lead, f"/cases/{second}/people/{match_id}", {"confirm": "Yes, the same person"},
                    form_page=f"/cases/{second}")
    assert done.status_code == 302
    after = lead.get(f"/cases/{second}").get_data(as_text=True)
    assert f"Recorded: {second} and {first} are the same person." in after
    assert "Possibly the same person" not in after
    assert _person(after) == _person(lead.get(f"/cases/{first}").get_data(as_text=True))
    assert f"Confirmed as the same person as {first}" in lead.get(f"/cases/{second}/timeline").get_data(as_text=True)
    again = web.post(lead, f"/cases/{second}/people/{match_id}", {"dismiss": "No"}, form_page=f"/cases/{second}")
    assert "This possible match was already confirmed." in lead.get(again.headers["Location"]).get_data(as_text=True)
    assert web.post(auditor, f"/cases/{second}/people/{match_id}", {"dismiss": "No"},
                    form_page=f"/cases/{second}").status_code == 403


def test_a_lead_corrects_a_typo_after_giving_a_reason_and_the_pseudonym_stays(web: Web) -> None:
    ref = web.world.reported
    lead = web.sign_in(web.world.lead)
    before = _person(lead.get(f"/cases/{ref}").get_data(as_text=True))
    locked = lead.get(f"/cases/{ref}/identity/correct")
    assert locked.status_code == 302 and locked.headers["Location"].endswith(f"/cases/{ref}/identity")
    web.post(lead, f"/cases/{ref}/identity", {"reason": REASON})
    form = lead.get(f"/cases/{ref}/identity/correct").get_data(as_text=True)
    assert f'value="{CANARY_NAME}"' in form and 'value="14"' in form  # the date of birth, 14 3 1987

    path = f"/cases/{ref}/identity/correct"
    base = {"detainee_name": CANARY_NAME, "detainee_number": CANARY_NUMBER,
            "detainee_date_of_birth": ["14", "3", "1987"]}
    bad = web.post(lead, path, {**base, "detainee_name": "", "reason": "typo"})
    assert bad.status_code == 400 and "Enter the person&#39;s name" in bad.get_data(as_text=True)
    same = web.post(lead, path, {**base, "reason": "typo"})
    assert "they are as recorded already" in same.get_data(as_text=True)
    no_reason = web.post(lead, path, {**base, "detainee_name": "Zebediah Canarywhistler", "reason": ""})
    assert "Enter why you are correcting who the person is" in no_reason.get_data(as_text=True)
    with web.database.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(sa.text("wf_history"))
                        .where(sa.text("kind = 'identity_corrected'"))) == 0

    done = web.post(lead, path, {**base, "detainee_name": "Zebediah Canarywhistler", "reason": "misspelt"})
    assert done.status_code == 302
    page = lead.get(done.headers["Location"]).get_data(as_text=True)
    assert "Corrected the name. The person keeps their pseudonym." in page
    assert "Zebediah Canarywhistler" in page and _person(page) == before
    assert "Corrected who the person is" in lead.get(f"/cases/{ref}/timeline").get_data(as_text=True)
    assert f'href="/cases/{web.world.triaged}"' in _section(page)  # still linked to the person's other case
    assert web.post(web.sign_in(web.world.staff), path, {**base, "reason": "x"}).status_code == 403


@ONE_DATABASE
def test_people_link_and_keys_generate_pseudonym(web: Web, run: Cli) -> None:
    web.database.raw("UPDATE detainees SET person = NULL, name_hash = NULL, dob_hash = NULL, number_hash = NULL")
    linked = run("people", "link")
    assert linked.exit_code == 0, linked.output
    assert "linked 2 person record(s) to pseudonyms" in linked.output
    people = {r.person for r in web.database.raw("SELECT person FROM detainees")}
    assert len(people) == 1 and None not in people
    assert "linked" not in run("people", "link").output.split("every")[0]
    key = run("keys", "generate", "--pseudonym")
    assert key.exit_code == 0 and len(key.output.strip()) >= 32
    assert_refused(run("keys", "generate", "--pseudonym", "--signing"), "choose one of --signing and --pseudonym")


@ONE_DATABASE
def test_production_needs_its_own_pseudonym_key(web: Web, tmp_path: Path) -> None:
    from reprisals.errors import ConfigurationError

    env = settings_env(web.database, tmp_path, ENV="production")
    for value, problem in ((None, "required in production"), ("short", "too short"),
                           (env["REPRISALS_ENCRYPTION_KEYS"], "must not be one of the encryption keys")):
        given = {k: v for k, v in env.items() if k != "REPRISALS_PSEUDONYM_KEY"}
        if value is not None:
            given["REPRISALS_PSEUDONYM_KEY"] = value
        try:
            load_settings(given, dotenv=None)
        except ConfigurationError as exc:
            assert [p for p in exc.problems if "PSEUDONYM_KEY" in p and problem in p], exc.problems
        else:
            raise AssertionError(f"accepted {value!r}")
    assert load_settings(env, dotenv=None).pseudonym_key == env["REPRISALS_PSEUDONYM_KEY"]


@ONE_DATABASE
def test_the_api_and_the_command_give_the_pseudonym_and_the_same_persons_cases(web: Web, run: Cli) -> None:
    from tests.web.test_api import Api

    reported, triaged = web.world.reported, web.world.triaged
    body = Api(web, web.world.auditor).get(f"/api/cases/{reported}").get_json()
    assert PSEUDONYM.match(f"Person {body['person']}") and body["same_person_cases"] == [triaged]
    assert CANARY_NAME not in str(body)
    shown = run("case", "show", triaged, "--as", web.world.auditor)
    assert f"person: {body['person']}; also in {reported}" in shown.output
    assert CANARY_NAME not in shown.output
