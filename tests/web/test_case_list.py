"""The case list: who sees what, each filter, search, sort, pages, and bad query strings."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from reprisals.deadlines import make_timer_handler
from reprisals.models import Establishment, Nation, User
from reprisals.services import open_case
from tests.conftest import DATABASES
from tests.factories import CANARY_DESCRIPTION, CANARY_NAME, CANARY_NUMBER, case_data, cipher, make_establishment
from tests.web.conftest import Web

_REF = re.compile(r'href="/cases/(RPR-\d{4}-\d{4,})"')


def references(client: FlaskClient, query: str = "") -> list[str]:
    response = client.get(f"/cases/{query}")
    assert response.status_code == 200, response.status_code
    html = response.get_data(as_text=True)
    assert "There is a problem" not in html, html[:3000]
    return _REF.findall(html)


def user(web: Web, email: str) -> User:
    with web.database.session() as s:
        found = s.scalars(select(User).where(User.email == email)).one()
        s.expunge(found)
        return found


def add_cases(web: Web, n: int, *, by: str | None = None, establishment: str | None = None,
              nation: Nation = Nation.ENGLAND, **overrides: Any) -> list[str]:
    """Open ``n`` cases (reported by ``by``, default the IMB lead); returns their references."""
    with web.database.session() as s:
        actor = s.scalars(select(User).where(User.email == (by or web.world.lead))).one()
        est = (s.get(Establishment, web.world.establishment_id) if establishment is None
               else make_establishment(s, name=establishment, nation=nation))
        assert est is not None
        refs = [open_case(s, web.rt.engine, cipher(), actor, web.clock.now(), case_data(est, **overrides)).reference
                for _ in range(n)]
        s.commit()
    return refs


def test_each_role_sees_only_the_cases_it_may(web: Web) -> None:
    w = web.world
    other = user(web, w.other_staff)
    [elsewhere] = add_cases(web, 1, assigned_user_id=other.id)
    [ppo_case] = add_cases(web, 1, by=w.outside_lead, party_bodies=[])
    assert sorted(references(web.sign_in(w.staff))) == sorted([w.reported, w.triaged])
    assert references(web.sign_in(w.other_staff)) == [elsewhere]
    assert references(web.sign_in(w.outside_lead)) == [ppo_case]  # none of IMB's
    assert sorted(references(web.sign_in(w.auditor))) == sorted([w.reported, w.triaged, elsewhere])
    assert sorted(references(web.sign_in(w.lead))) == sorted([w.reported, w.triaged, elsewhere])


def test_the_list_shows_what_a_case_is_and_never_who(web: Web) -> None:
    client = web.sign_in(web.world.lead)
    html = client.get("/cases/").get_data(as_text=True)
    assert "<caption" in html and 'scope="col"' in html
    assert f'href="/cases/{web.world.triaged}"' in html
    assert "Triage" in html and "Reported" in html  # the stage labels of the protocol
    assert "HMP Thornbury Fen" in html and "Standard" in html
    for secret in (CANARY_NAME, CANARY_NUMBER, CANARY_DESCRIPTION, "1987"):
        assert secret not in html


def test_filters_narrow_the_list(web: Web) -> None:
    w = web.world
    lead = user(web, w.lead)
    urgent = add_cases(web, 1, risk="urgent")[0]
    welsh = add_cases(web, 1, establishment="HMP Cymru", nation=Nation.WALES, risk="high")[0]
    ppo_owned_with_imb = add_cases(web, 1, by=w.outside_lead, party_bodies=["IMB"])[0]
    unassigned = [urgent, welsh, ppo_owned_with_imb]
    client = web.sign_in(w.lead)
    everything = sorted([w.reported, w.triaged, *unassigned])
    assert sorted(references(client)) == everything
    assert references(client, "?stage=triage") == [w.triaged]
    assert sorted(references(client, "?stage=reported")) == sorted([w.reported, *unassigned])
    assert references(client, "?risk=urgent") == [urgent]
    assert references(client, "?risk=high") == [welsh]
    assert references(client, "?nation=wales") == [welsh]
    assert sorted(references(client, "?nation=england")) == sorted([w.reported, w.triaged, urgent,
                                                                     ppo_owned_with_imb])
    with web.database.session() as s:
        cymru = s.scalars(select(Establishment.id).where(Establishment.name == "HMP Cymru")).one()
    assert references(client, f"?establishment={cymru}") == [welsh]
    assert references(client, "?body=PPO") == [ppo_owned_with_imb]
    assert ppo_owned_with_imb not in references(client, "?body=IMB")
    staff = user(web, w.staff)
    assert sorted(references(client, "?assigned=nobody")) == sorted(unassigned)
    assert sorted(references(client, f"?assigned={staff.id}")) == sorted([w.reported, w.triaged])
    assert references(client, "?assigned=me") == []
    mine = add_cases(web, 1, assigned_user_id=lead.id)[0]
    assert references(client, "?assigned=me") == [mine]
    assert references(client, "?stage=triage&risk=urgent") == []  # filters combine


def test_overdue_filter_follows_the_deadlines(web: Web) -> None:
    w = web.world
    # The world's cases were received in April 2025: their first deadlines passed long ago.
    fresh = add_cases(web, 1, received_at=web.clock.now().isoformat())[0]
    with web.database.session() as s:
        web.rt.timers.sweep_due(s, web.clock.now(), make_timer_handler(web.rt.messenger))
    client = web.sign_in(w.lead)
    assert sorted(references(client, "?overdue=yes")) == sorted([w.reported, w.triaged])
    assert references(client, "?overdue=no") == [fresh]
    html = client.get("/cases/?overdue=yes").get_data(as_text=True)
    assert html.count("govuk-tag--red\">Overdue") == 2
    assert references(client, "?sort=time_left")[0] in (w.reported, w.triaged)
    assert references(client, "?sort=time_left")[-1] == fresh


def test_search_by_reference_exact_or_prefix_in_any_case(web: Web) -> None:
    w = web.world
    client = web.sign_in(w.lead)
    assert references(client, f"?q={w.triaged}") == [w.triaged]
    assert references(client, f"?q={w.triaged.lower()}") == [w.triaged]
    prefix = w.triaged.rsplit("-", 1)[0]  # RPR-<year>
    assert sorted(references(client, f"?q={prefix}")) == sorted([w.reported, w.triaged])
    assert references(client, "?q=RPR-1999") == []
    assert "No cases" in client.get("/cases/?q=RPR-1999").get_data(as_text=True)


def test_pages_of_25_sorted_by_received(web: Web) -> None:
    base = web.clock.now() - timedelta(days=40)
    refs = []
    for i in range(28):
        refs += add_cases(web, 1, received_at=(base + timedelta(days=i)).isoformat())
    client = web.sign_in(web.world.lead)
    first = references(client)
    assert len(first) == 25
    # newest first: the world's cases (received later in the test year? no: April 2025) sort by date
    assert first[:25] == list(reversed(refs))[:25]
    second = references(client, "?page=2")
    assert second == list(reversed(refs))[25:] + sorted([web.world.triaged, web.world.reported], reverse=True)
    html = client.get("/cases/?page=2").get_data(as_text=True)
    assert 'aria-current="page"' in html and "govuk-pagination" in html
    oldest = references(client, "?sort=received_oldest")
    assert oldest[:2] == sorted([web.world.reported, web.world.triaged]) and oldest[2] == refs[0]
    # filters are kept in the page links
    html = client.get("/cases/?stage=reported&sort=received_oldest").get_data(as_text=True)
    assert "stage=reported" in html and "page=2" in html
    risk_first = references(client, "?sort=risk")
    assert len(risk_first) == 25


@pytest.mark.parametrize("query, message", [
    ("?stage=nonsense", "Select a stage from the list"),
    ("?risk=catastrophic", "Select a risk from the list"),
    ("?page=abc", "Page must be a whole number"),
    ("?page=0", "Page must be a whole number"),
    ("?page=-3", "Page must be a whole number"),
    ("?page=99999999999999999999", "Page must be a whole number"),
    ("?page=7", "There is no page 7"),
    ("?establishment=abc", "Select an establishment from the list"),
    ("?establishment=999999999999999999999", "Select an establishment from the list"),
    ("?assigned=12345678", "Select who the case is assigned to from the list"),
    ("?overdue=maybe", "Select overdue or not overdue"),
    ("?sort=name", "Select a sort order from the list"),
    ("?q=%25", "Enter a case reference"),
    ("?q=RPR%27%20OR%201=1", "Enter a case reference"),
])
def test_invalid_filters_show_an_error_summary_never_a_500(web: Web, query: str, message: str) -> None:
    client = web.sign_in(web.world.lead)
    response = client.get(f"/cases/{query}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "govuk-error-summary" in html and message in html
    assert "<title>Error: Cases" in html
    # the bad value is dropped: the unfiltered first page is shown
    assert sorted(_REF.findall(html)) == sorted([web.world.reported, web.world.triaged])


def test_a_user_of_another_body_is_not_a_valid_assignee_filter(web: Web) -> None:
    outsider = user(web, web.world.outside_lead)
    client = web.sign_in(web.world.lead)
    html = client.get(f"/cases/?assigned={outsider.id}").get_data(as_text=True)
    assert "Select who the case is assigned to from the list" in html


def test_roles_without_cases_cannot_list(web: Web) -> None:
    assert web.sign_in(web.world.admin).get("/cases/").status_code == 403
    assert web.client().get("/cases/").status_code == 302  # to sign in



@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # the rule, not the database: one is enough
def test_the_page_and_the_api_list_the_same_cases_for_the_same_filters(web: Web) -> None:
    from tests.web.test_api import Api

    w = web.world
    staff = user(web, w.staff)
    add_cases(web, 2, risk="urgent", received_at=web.clock.now().isoformat())
    add_cases(web, 1, establishment="HMP Cymru", nation=Nation.WALES, risk="high", assigned_user_id=staff.id)
    add_cases(web, 1, by=w.outside_lead, party_bodies=["IMB"])
    add_cases(web, 3, received_at=(web.clock.now() - timedelta(days=3)).isoformat())
    prefix = w.triaged.rsplit("-", 1)[0]
    page_client, api = web.sign_in(w.lead), Api(web, w.lead)
    filter_sets: list[tuple[str, str]] = [
        ("", ""), ("?stage=reported", "stage=reported"), ("?risk=urgent", "risk=urgent"),
        ("?overdue=yes", "overdue=true"), ("?overdue=no&sort=time_left", "overdue=false&sort=time_left"),
        ("?due=week", "due=week"), ("?assigned=nobody&sort=risk", "assigned=nobody&sort=risk"),
        (f"?assigned={staff.id}", f"assigned={staff.id}"), ("?nation=wales", "nation=wales"),
        ("?body=PPO", "body=PPO"), (f"?q={prefix.lower()}&sort=received_oldest",
                                     f"reference={prefix.lower()}&sort=received_oldest"),
    ]
    seen = set()
    for page_query, api_query in filter_sets:
        on_page = references(page_client, page_query)
        body = api.get(f"/api/cases?per_page=25&{api_query}").get_json()
        assert [c["reference"] for c in body["items"]] == on_page, page_query
        assert body["total"] == len(on_page) and body["total_capped"] is False
        seen |= {len(on_page)}
        for item in body["items"]:  # the API says the same next step as the page's rows
            assert item["next_step"] is None or item["next_step"]["label"]
    assert len(seen) >= 4  # the filter sets narrowed the list in different ways
    # both refuse the same values, each in its own way
    assert "Select a stage from the list" in page_client.get("/cases/?stage=nowhere").get_data(as_text=True)
    problem = api.get("/api/cases?stage=nowhere").get_json()
    assert problem["errors"] == {"stage": "Select a stage from the list"}


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # the rule, not the database: one is enough
def test_the_filters_follow_the_moj_filter_pattern(web: Web) -> None:
    w = web.world
    urgent = add_cases(web, 1, risk="urgent")[0]
    client = web.sign_in(w.lead)
    html = client.get("/cases/?risk=urgent&stage=reported&sort=risk").get_data(as_text=True)
    assert re.findall(r'href="/cases/(RPR-\d{4}-\d+)"', html) == [urgent]
    selected = html.split('id="selected-filters"', 1)[1].split("</ul>", 1)[0]
    # each selected filter is a tag: a link to the list without it (the sort is kept)
    tags = dict(re.findall(r'<a class="app-filter__tag" href="([^"]+)">'
                           r'<span class="govuk-visually-hidden">Remove this filter: </span>([^<]+)</a>', selected))
    assert tags == {"/cases/?stage=reported&amp;sort=risk": "Risk: Urgent",
                    "/cases/?risk=urgent&amp;sort=risk": "Stage: Reported"}
    assert 'id="clear-filters" href="/cases/"' in selected
    assert sorted(references(client, "?stage=reported&sort=risk")) == sorted([w.reported, urgent])
    # without JavaScript the panel is open (app.js adds the toggle), and the form keeps what was chosen
    assert 'id="case-filters"' in html and "hidden" not in html.split('id="case-filters"', 1)[1].split(">", 1)[0]
    assert re.search(r'<option[^>]*value="urgent"[^>]*selected|<option[^>]*selected[^>]*value="urgent"', html)
    # no filter: no tags, no "Clear filters"
    plain = client.get("/cases/").get_data(as_text=True)
    assert 'id="selected-filters"' not in plain and "Clear filters" not in plain


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # the rule, not the database: one is enough
def test_staff_are_not_offered_filters_that_can_only_return_nothing(web: Web) -> None:
    client = web.sign_in(web.world.staff)
    html = client.get("/cases/").get_data(as_text=True)
    assert 'name="body"' not in html and 'name="assigned"' not in html
    assert 'name="stage"' in html and 'name="risk"' in html and 'name="due"' in html
    lead = web.sign_in(web.world.lead).get("/cases/").get_data(as_text=True)
    assert 'name="body"' in lead and 'name="assigned"' in lead
    # a link made for a lead, followed by a member of staff: refused in words, the list unfiltered
    refused = client.get("/cases/?body=PPO").get_data(as_text=True)
    assert "Select an owning body from the list" in refused
    assert sorted(_REF.findall(refused)) == sorted([web.world.reported, web.world.triaged])


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # the rule, not the database: one is enough
def test_rows_say_the_next_step_as_the_home_does(web: Web) -> None:
    html = web.sign_in(web.world.lead).get("/cases/").get_data(as_text=True)
    assert f'href="/cases/{web.world.reported}/actions/record_consent_and_risk">Record consent and risk' in html
    assert f'href="/cases/{web.world.triaged}/actions/refer">Refer to the establishment' in html
    auditor = web.sign_in(web.world.auditor).get("/cases/").get_data(as_text=True)
    assert "/actions/" not in auditor and "or a lead of IMB" in auditor and "For a lead of IMB" in auditor


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # the rule, not the database: one is enough
def test_the_count_stops_at_the_cap_on_the_page_and_in_the_api(web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    from reprisals.readside import case_list
    from tests.web.test_api import Api

    add_cases(web, 2)
    monkeypatch.setattr(case_list, "COUNT_CAP", 3)  # four cases: more than the cap
    html = web.sign_in(web.world.lead).get("/cases/").get_data(as_text=True)
    assert "More than 3 cases" in html and "The first 3 are listed" in html
    body = Api(web, web.world.lead).get("/api/cases?per_page=2&page=2").get_json()
    assert body["total"] == 3 and body["total_capped"] is True and len(body["items"]) == 1  # the third of 3
    assert Api(web, web.world.lead).get("/api/cases?per_page=2&page=3").get_json()["items"] == []
