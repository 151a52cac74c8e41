"""Home pages per role: the lead's queue (order, counts, next steps), what staff owe, auditors'
recent activity without identity, administrators' links."""

from __future__ import annotations

import re
from datetime import timedelta

import sqlalchemy as sa

from reprisals.models import Case, Role, User
from tests.factories import CANARY_DESCRIPTION, CANARY_NAME, CANARY_NUMBER, case_data, cipher
from tests.web.conftest import Web
from web.home import lead_queue


def _user(web: Web, email: str) -> User:
    with web.database.session() as s:
        return s.scalars(sa.select(User).where(User.email == email)).one()


def _open(web: Web, risk: str, **kw: object) -> str:
    from reprisals.services import open_case

    with web.database.session() as s:
        lead = s.scalars(sa.select(User).where(User.email == web.world.lead)).one()
        from reprisals.models import Establishment

        est = s.get(Establishment, web.world.establishment_id)
        assert est is not None
        case = open_case(s, web.rt.engine, cipher(), lead, web.clock.now(), case_data(est, risk=risk, **kw))
        s.commit()
        return case.reference


def _set_due(web: Web, reference: str, delta: timedelta) -> None:
    """Move the case's running deadlines to now + delta (as if it were received earlier or later)."""
    with web.database.engine.begin() as conn:
        iid = conn.execute(sa.select(Case.instance_id).where(Case.reference == reference)).scalar_one()
        conn.execute(sa.text("UPDATE wf_deadlines SET due_at = :d WHERE instance_id = :i AND status IN "
                             "('open', 'overdue')"), {"d": (web.clock.now() + delta).replace(tzinfo=None)
                                                     if web.database.dialect == "sqlite" else web.clock.now() + delta,
                                                     "i": iid})


def _references(html: str, table: str) -> list[str]:
    section = html.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    return re.findall(r"(RPR-\d{4}-\d{4,})</a>", section)


def test_lead_queue_orders_by_risk_then_nearest_deadline(web: Web) -> None:
    std_far = _open(web, "standard")
    urgent_later = _open(web, "urgent")
    high = _open(web, "high")
    urgent_overdue = _open(web, "urgent")
    std_overdue = _open(web, "standard")
    _set_due(web, std_far, timedelta(days=30))
    _set_due(web, urgent_later, timedelta(days=3))
    _set_due(web, urgent_overdue, timedelta(hours=-5))
    _set_due(web, high, timedelta(days=20))
    _set_due(web, std_overdue, timedelta(days=-2))
    for ref in (web.world.reported, web.world.triaged):
        _set_due(web, ref, timedelta(days=10))
    client = web.sign_in(web.world.lead)
    html = client.get("/").get_data(as_text=True)
    order = _references(html, "queue")
    assert order[:4] == [urgent_overdue, urgent_later, high, std_overdue]
    assert order.index(std_overdue) < order.index(web.world.reported) < order.index(std_far)
    assert set(order) == {std_far, urgent_later, high, urgent_overdue, std_overdue, web.world.reported,
                          web.world.triaged}
    assert "Overdue by 5 hours" in html
    counts = re.findall(r'<strong class="govuk-!-font-size-36">(\d+)</strong>', html)
    assert counts == ["2", "1"]  # two overdue, one due within a week (urgent_later)
    # next steps: the labels of the actions the lead may take at each case's stage
    assert "Record consent and risk" in html and "Refer to the establishment" in html
    assert CANARY_NAME not in html and CANARY_DESCRIPTION not in html
    # the same through the function, with every risk level sparse and walked
    with web.database.session() as s:
        from web import home

        direct = [i.reference for i in lead_queue(s, "IMB")]
        old = home.SMALL
        home.SMALL = 0  # force the deadline walk for every level
        try:
            walked = [i.reference for i in lead_queue(s, "IMB")]
        finally:
            home.SMALL = old
    assert direct == order == walked


def test_queue_leaves_out_closed_cases_and_other_bodies(web: Web) -> None:
    from reprisals.services import advance_case

    with web.database.session() as s:
        lead = s.scalars(sa.select(User).where(User.email == web.world.lead)).one()
        case = s.scalars(sa.select(Case).where(Case.reference == web.world.triaged)).one()
        advance_case(s, web.rt.engine, lead, case, "decline", {"reason": "Out of scope."}, web.clock.now())
        s.commit()
    html = web.sign_in(web.world.lead).get("/").get_data(as_text=True)
    assert _references(html, "queue") == [web.world.reported]
    outside = web.sign_in(web.world.outside_lead).get("/").get_data(as_text=True)
    assert "Your body has no open cases." in outside


def test_staff_home_shows_only_their_cases_soonest_first(web: Web) -> None:
    other = _user(web, web.world.other_staff)
    theirs = _open(web, "high", assigned_user_id=other.id)
    _set_due(web, web.world.reported, timedelta(days=4))
    _set_due(web, web.world.triaged, timedelta(hours=-1))
    html = web.sign_in(web.world.staff).get("/").get_data(as_text=True)
    assert _references(html, "owed") == [web.world.triaged, web.world.reported]
    assert theirs not in html
    assert "Overdue by 1 hour" in html and "4 days left" in html
    other_html = web.sign_in(web.world.other_staff).get("/").get_data(as_text=True)
    assert _references(other_html, "owed") == [theirs]


def test_auditor_home_lists_recent_events_without_identity(web: Web) -> None:
    from reprisals.services import view_identity

    with web.database.session() as s:
        lead = s.scalars(sa.select(User).where(User.email == web.world.lead)).one()
        case = s.scalars(sa.select(Case).where(Case.reference == web.world.reported)).one()
        view_identity(s, web.rt.engine, cipher(), lead, case, "checking CANARYREASON", web.clock.now())
        s.commit()
    html = web.sign_in(web.world.auditor).get("/").get_data(as_text=True)
    rows = html.split('id="activity"', 1)[1]
    assert "Identity viewed (with a reason)" in rows and "Record consent and risk" in rows
    assert "Case reported" in rows
    assert lead.name in rows
    assert rows.index("Identity viewed") < rows.index("Record consent and risk")  # newest first
    for secret in (CANARY_NAME, CANARY_NUMBER, CANARY_DESCRIPTION, "CANARYREASON"):
        assert secret not in html


def test_admin_home_links_to_administration(web: Web) -> None:
    html = web.sign_in(web.world.admin).get("/").get_data(as_text=True)
    for path in ("/admin/users", "/admin/establishments", "/admin/protocols", "/admin/failed-messages"):
        assert f'href="{path}"' in html
    assert Role.ADMIN  # the admin has no queue
    assert 'id="queue"' not in html


def active_navigation(html: str) -> list[str]:
    """The text of the service navigation's active items."""
    return [re.sub(r"<[^>]+>", "", m).strip() for m in re.findall(
        r'govuk-service-navigation__item--active">\s*<a[^>]*>(.*?)</a>', html, flags=re.S)]


def test_the_navigation_marks_the_section_of_the_page(web: Web) -> None:
    lead = web.sign_in(web.world.lead)
    assert active_navigation(lead.get("/").get_data(as_text=True)) == ["Home"]
    assert active_navigation(lead.get("/cases/").get_data(as_text=True)) == ["Cases"]
    assert active_navigation(lead.get("/cases/new").get_data(as_text=True)) == ["Report a concern"]
    assert active_navigation(lead.get("/cases/new/establishment").get_data(as_text=True)) == ["Report a concern"]
    assert active_navigation(lead.get("/account/").get_data(as_text=True)) == ["Your account"]
