"""Home pages per role: the lead's queue (order, counts, next steps), what staff owe, auditors'
recent activity without identity, administrators' links."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from reprisals.models import Case, Role, User
from reprisals.readside import queue
from reprisals.vocabulary import moment_words, time_left
from tests.conftest import DATABASES
from tests.factories import CANARY_DESCRIPTION, CANARY_NAME, CANARY_NUMBER, case_data, cipher
from tests.web.conftest import Web
from workflow.calendars import calendar_for


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


def test_lead_queue_is_overdue_first_then_time_left_then_risk(web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
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
    assert order[:3] == [std_overdue, urgent_overdue, urgent_later]
    assert order[3:5] == sorted(order[3:5]) and set(order[3:5]) == {web.world.reported, web.world.triaged}
    assert order[5:] == [high, std_far]
    assert "Overdue by 5 hours" in html
    counts = re.findall(r'<strong class="govuk-!-font-size-36">(\d+)</strong>', html)
    assert counts == ["2", "1"]  # two overdue, one due within a week (urgent_later)
    # each row's one next step: a link to its form, with its due date
    due = web.clock.now() + timedelta(days=10)
    assert (f'href="/cases/{web.world.reported}/actions/record_consent_and_risk">Record consent and risk'
            f'<span class="govuk-visually-hidden"> on {web.world.reported}</span></a> — due '
            f'{moment_words(due, short=True)}') in html
    assert f'href="/cases/{web.world.triaged}/actions/refer"' in html
    assert "/actions/withdraw" not in html and "/actions/left_custody" not in html
    assert "HMP Thornbury Fen" in html and "Received" in html
    assert CANARY_NAME not in html and CANARY_DESCRIPTION not in html
    # the same through the read side, with the deadline walk a body with many cases takes
    with web.database.session() as s:
        ids = queue.queue_ids(s, "IMB")
        monkeypatch.setattr(queue, "SMALL", 0)
        walked = queue.queue_ids(s, "IMB")
        direct = list(s.scalars(sa.select(Case.reference).where(Case.id.in_(ids))))
    assert ids == walked and sorted(direct) == sorted(order)


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # the rule, not the database: one is enough
def test_the_counts_link_to_the_cases_they_count(web: Web) -> None:
    soon = _open(web, "urgent")
    later = _open(web, "standard")
    _set_due(web, soon, timedelta(days=2))
    _set_due(web, later, timedelta(days=20))
    client = web.sign_in(web.world.lead)
    html = client.get("/").get_data(as_text=True)
    assert 'id="overdue-count" href="/cases/?overdue=yes"' in html and 'id="week-count" href="/cases/?due=week"' in html
    overdue = client.get("/cases/?overdue=yes").get_data(as_text=True)
    assert sorted(set(re.findall(r'href="/cases/(RPR-\d{4}-\d+)"', overdue))) == sorted(
        [web.world.reported, web.world.triaged])  # received in April 2025: long overdue
    week = client.get("/cases/?due=week").get_data(as_text=True)
    assert set(re.findall(r'href="/cases/(RPR-\d{4}-\d+)"', week)) == {soon}
    assert "Due: In the next 7 days" in week  # the selected filter's tag


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # the rule, not the database: one is enough
def test_a_paused_deadline_says_paused_not_no_deadline(web: Web) -> None:
    with web.database.engine.begin() as conn:
        iid = conn.execute(sa.select(Case.instance_id).where(Case.reference == web.world.reported)).scalar_one()
        conn.execute(sa.text("UPDATE wf_deadlines SET status = 'paused', paused_at = due_at WHERE instance_id = :i "
                             "AND status IN ('open', 'overdue')"), {"i": iid})
    html = web.sign_in(web.world.lead).get("/").get_data(as_text=True)
    row = html.split(f">{web.world.reported}</a>", 1)[1].split("</tr>", 1)[0]
    assert "Paused" in row and "when paused" in row
    assert "No running deadline" not in html and "No deadline" not in row


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
    assert 'id="queue"' not in outside and "Your body has no cases yet" in outside  # PPO has none at all


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # the rule, not the database: one is enough
def test_a_body_with_no_case_yet_sees_what_to_do_first(web: Web) -> None:
    html = web.sign_in(web.world.outside_lead).get("/").get_data(as_text=True)
    first = html.split('id="first-steps"', 1)[1]
    assert 'href="/cases/new">Report a concern</a>' in first and 'href="/accounts/pending"' in first
    from reprisals.services import advance_case

    with web.database.session() as s:  # a body whose cases are all closed has had cases
        lead = s.scalars(sa.select(User).where(User.email == web.world.lead)).one()
        for case in s.scalars(sa.select(Case)).all():
            advance_case(s, web.rt.engine, lead, case, "withdraw", {}, web.clock.now())
        s.commit()
    lead = web.sign_in(web.world.lead).get("/").get_data(as_text=True)
    assert "Your body has no open cases." in lead and 'id="first-steps"' not in lead


def test_staff_home_shows_only_their_cases_what_they_can_do_and_who_must_do_the_rest(web: Web) -> None:
    other = _user(web, web.world.other_staff)
    theirs = _open(web, "high", assigned_user_id=other.id)
    _set_due(web, web.world.reported, timedelta(days=4))
    _set_due(web, web.world.triaged, timedelta(hours=-1))
    html = web.sign_in(web.world.staff).get("/").get_data(as_text=True)
    assert _references(html, "owed") == [web.world.triaged, web.world.reported]
    assert theirs not in html
    at = web.clock.now()
    for delta in (timedelta(hours=-1), timedelta(days=4)):
        words = time_left(at + delta, at, in_hours=False, calendar=calendar_for("england")).words
        assert words.capitalize() in html
    # reported: consent and risk is theirs to record; triage: referring is a lead's, named
    assert f'href="/cases/{web.world.reported}/actions/record_consent_and_risk"' in html
    row = html.split(f">{web.world.triaged}</a>", 1)[1].split("</tr>", 1)[0]
    lead, second = _user(web, web.world.lead), _user(web, web.world.second_lead)
    assert "Refer to the establishment" in row and "/actions/refer" not in row
    assert f"For a lead of IMB ({', '.join(sorted([lead.name, second.name]))})" in row
    assert "/actions/withdraw" not in html and "/actions/left_custody" not in html
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
    links = html.split('id="auditor-links"', 1)[1].split("</ul>", 1)[0]
    for path in ('href="/cases/"', 'href="/reports/"', 'href="/unmask', 'href="/access-log'):
        assert path in links
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
