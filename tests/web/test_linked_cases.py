"""Linked cases through the command and the API: ``linked_case`` in a new case's JSON opens it linked to an
earlier case, and each case shows the other (``Linked to`` / ``Linked from``; ``linked_case`` /
``linked_cases``). The earlier case is closed with ``withdraw``, which every protocol version has."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import select

from reprisals.models import Case, User
from reprisals.services import advance_case
from tests.conftest import Database
from tests.factories import CANARY_NAME, CANARY_NUMBER
from tests.web.conftest import Cli, Web, World, assert_refused, count_rows, csrf_token
from tests.web.test_api import Api, assert_no_identity, assert_problem, new_case_body
from tests.web.test_cli import assert_no_identity as assert_no_identity_text
from tests.web.test_cli import case_data_for
from tests.web.test_report import Flow, answers

# -- the command ---------------------------------------------------------------------------------------


def test_case_open_links_the_new_case_and_case_show_gives_both_directions_when_linked_case_given(
        run: Cli, world: World) -> None:
    earlier = world.reported
    closed = run("case", "advance", earlier, "withdraw", "--as", world.lead)
    assert closed.exit_code == 0, closed.output

    opened = run("case", "open", "--as", world.lead, "--json",
                 input=json.dumps(case_data_for(world, linked_case=earlier)))
    assert opened.exit_code == 0, opened.output
    later = json.loads(opened.stdout)["reference"]
    assert json.loads(opened.stdout)["linked_case"] == earlier

    new = run("case", "show", later, "--as", world.lead, "--json", "--history")
    old = run("case", "show", earlier, "--as", world.lead, "--json", "--history")
    assert (json.loads(new.stdout)["linked_case"], json.loads(new.stdout)["linked_cases"]) == (earlier, [])
    assert (json.loads(old.stdout)["linked_case"], json.loads(old.stdout)["linked_cases"]) == (None, [later])
    assert json.loads(new.stdout)["history"][0]["data"]["linked_case"] == earlier
    assert [(e["kind"], e["data"]) for e in json.loads(old.stdout)["history"]][-1] == (
        "case_linked", {"linked_case": later})

    human_new = run("case", "show", later, "--as", world.lead)
    human_old = run("case", "show", earlier, "--as", world.lead)
    assert f"  Linked to: {earlier} (this case was opened from it)\n" in human_new.stdout
    assert "Linked from" not in human_new.stdout
    assert f"  Linked from: {later} (opened from this case)\n" in human_old.stdout
    assert "Linked to" not in human_old.stdout
    for result in (opened, new, old, human_new, human_old):
        assert_no_identity_text(result.output)


def test_case_open_refuses_naming_linked_case_and_writes_nothing_when_the_user_may_not_see_it(
        run: Cli, world: World, database: Database) -> None:
    before = count_rows(database)
    for value in (world.reported, "RPR-1999-0042"):  # not assigned to other_staff; no such case
        result = run("case", "open", "--as", world.other_staff,
                     input=json.dumps(case_data_for(world, linked_case=value)))
        assert assert_refused(result) == ["error: linked_case: is not a case you can see: give the reference of an "
                                          "earlier case, such as RPR-2025-0001"]
    assert count_rows(database) == before


# -- the API -------------------------------------------------------------------------------------------


def test_api_opens_a_linked_case_and_each_case_names_the_other(web: Web) -> None:
    lead = Api(web, web.world.lead)
    earlier = web.world.reported
    version = lead.get(f"/api/cases/{earlier}").get_json()["version"]
    withdrawn = lead.post(f"/api/cases/{earlier}/actions/withdraw", {"expected_version": version})
    assert withdrawn.status_code == 200, withdrawn.get_data(as_text=True)
    assert withdrawn.get_json()["stage"] == "closed"

    created = lead.post("/api/cases", new_case_body(web, linked_case=earlier))
    assert created.status_code == 201, created.get_data(as_text=True)
    later = created.get_json()["reference"]
    assert (created.get_json()["linked_case"], created.get_json()["linked_cases"]) == (earlier, [])
    old = lead.get(f"/api/cases/{earlier}")
    assert (old.get_json()["linked_case"], old.get_json()["linked_cases"]) == (None, [later])
    assert old.get_json()["history"][-1]["kind"] == "case_linked"
    assert old.get_json()["history_verified"] is True
    # The assigned member of staff sees the earlier case, not the new one: its reference is not shown.
    staff_view = Api(web, web.world.staff).get(f"/api/cases/{earlier}").get_json()
    assert staff_view["linked_cases"] == []
    assert_no_identity(created, old)


def test_api_refuses_a_linked_case_the_user_may_not_see_as_422_naming_it_and_writes_nothing(web: Web) -> None:
    other = Api(web, web.world.other_staff)
    before = count_rows(web.database)
    problems = [assert_problem(other.post("/api/cases", new_case_body(web, linked_case=value)), 422)["errors"]
                for value in (web.world.reported, "RPR-1999-0042")]
    assert problems[0] == problems[1]
    assert set(problems[0]) == {"linked_case"} and "is not a case you can see" in problems[0]["linked_case"]
    assert set(assert_problem(other.post("/api/cases", new_case_body(web, linked_case=5)), 422)["errors"]) == {
        "linked_case"}
    assert count_rows(web.database) == before


# -- the pages ------------------------------------------------------------------------------------------


def withdraw(web: Web, reference: str) -> None:
    """Close a case the way every protocol version can: the person withdraws."""
    with web.database.session() as s:
        lead = s.scalars(select(User).where(User.email == web.world.lead)).one()
        case = s.scalars(select(Case).where(Case.reference == reference)).one()
        advance_case(s, web.rt.engine, lead, case, "withdraw", {}, web.clock.now())
        s.commit()


def start_linked(flow: Flow, reference: str) -> Any:
    page = flow.get(f"/cases/{reference}").get_data(as_text=True)
    flow.urls.append("/cases/new/linked")
    return flow.client.post("/cases/new/linked", data={"linked": reference, "csrf_token": csrf_token(page)})


LINK_BUTTON = 'action="/cases/new/linked"'


def test_a_lead_opens_a_linked_case_from_a_closed_case_and_both_pages_show_the_link(web: Web) -> None:
    earlier = web.world.reported
    withdraw(web, earlier)
    flow = Flow(web, web.world.lead)
    page = flow.get(f"/cases/{earlier}").get_data(as_text=True)
    assert LINK_BUTTON in page and "Open a linked case" in page and "govuk-button--secondary" in page
    assert LINK_BUTTON not in flow.get(f"/cases/{web.world.triaged}").get_data(as_text=True)  # still open
    for who in (web.world.staff, web.world.auditor):  # the assigned member of staff; an auditor
        assert LINK_BUTTON not in Flow(web, who).get(f"/cases/{earlier}").get_data(as_text=True)

    response = start_linked(flow, earlier)
    assert response.status_code == 302 and response.headers["Location"] == "/cases/new"
    start = flow.get("/cases/new").get_data(as_text=True)
    assert re.search(rf'The new case will be linked to case\s*<a class="govuk-link" href="/cases/{earlier}">'
                     rf'{earlier}</a>', start)
    flow.answer_all(answers(web))
    check = flow.get("/cases/new/check").get_data(as_text=True)
    assert re.search(r'Linked to\s*</dt>\s*<dd class="govuk-summary-list__value">\s*'
                     rf'<a class="govuk-link" href="/cases/{earlier}">{earlier}</a>', check), check[:6000]
    response = flow.post("/cases/new/check", {})
    assert response.status_code == 302 and response.headers["Location"] == "/cases/new/done"
    with web.database.session() as s:
        later = s.scalars(select(Case).order_by(Case.id.desc())).first()
        assert later is not None and later.linked_case is not None and later.linked_case.reference == earlier
        later_ref = later.reference

    new_page = flow.get(f"/cases/{later_ref}").get_data(as_text=True)
    old_page = flow.get(f"/cases/{earlier}").get_data(as_text=True)
    assert summary_row(new_page, "Linked to") == [earlier]
    assert summary_row(old_page, "Linked cases") == [later_ref]
    assert "Linked cases" not in new_page and summary_row(old_page, "Linked to") is None
    assert "A new case was opened linked to this one" in flow.get(f"/cases/{earlier}/timeline").get_data(as_text=True)
    for url in flow.urls:
        for secret in (CANARY_NAME, CANARY_NUMBER, "Zebediah", "1987", "CANARYTEXT"):
            assert secret not in url


def summary_row(html: str, key: str) -> list[str] | None:
    """The case references linked from a summary-list row's value, or None when there is no such row."""
    found = re.search(rf'<dt class="govuk-summary-list__key">\s*{key}\s*</dt>\s*'
                      r'<dd class="govuk-summary-list__value">(.*?)</dd>', html, re.S)
    return re.findall(r'href="/cases/(RPR-[0-9-]+)"', found[1]) if found else None


def test_open_a_linked_case_is_404_and_saves_nothing_when_the_user_may_not_see_the_case(web: Web) -> None:
    withdraw(web, web.world.reported)
    flow = Flow(web, web.world.other_staff)  # not assigned to it
    page = flow.get("/cases/new").get_data(as_text=True)
    for value in (web.world.reported, "RPR-1999-0042", ""):
        response = flow.client.post("/cases/new/linked", data={"linked": value, "csrf_token": csrf_token(page)})
        assert response.status_code == 404
    assert "linked to case" not in flow.get("/cases/new").get_data(as_text=True)
    assert web.database.raw("SELECT count(*) FROM report_drafts")[0][0] == 0
    # Without its CSRF token the request is refused.
    lead = Flow(web, web.world.lead)
    assert lead.client.post("/cases/new/linked", data={"linked": web.world.reported}).status_code == 400


def test_submit_opens_the_case_unlinked_after_saying_so_when_the_earlier_case_is_no_longer_visible(
        web: Web) -> None:
    earlier = web.world.reported  # assigned to the staff member
    withdraw(web, earlier)
    flow = Flow(web, web.world.staff)
    assert start_linked(flow, earlier).status_code == 302
    flow.answer_all(answers(web))
    web.database.raw("UPDATE cases SET assigned_user_id = NULL WHERE reference = :r", r=earlier)
    before = count_rows(web.database)
    refused = flow.post("/cases/new/check", {})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert f"The new case cannot be linked to {earlier}: it is not a case you can see" in html
    assert "govuk-error-summary" in html and 'href="#submit"' in html and 'id="submit"' in html
    assert summary_row(html, "Linked to") is None
    assert count_rows(web.database) == before
    response = flow.post("/cases/new/check", {})
    assert response.status_code == 302 and response.headers["Location"] == "/cases/new/done"
    with web.database.session() as s:
        later = s.scalars(select(Case).order_by(Case.id.desc())).first()
        assert later is not None and later.linked_case_id is None
