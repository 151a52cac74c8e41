"""Reporting a concern: the question flow, check answers, submit, errors on every step, and the
draft kept on the server only as ciphertext bound to the signed-in session, never in the cookie."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, text, update

from notifications.models import OutboxMessage
from reprisals.models import Case, Establishment, User
from reprisals.services import read_description, view_identity
from tests.conftest import DATABASES
from tests.factories import CANARY_DESCRIPTION, CANARY_DOB, CANARY_NAME, CANARY_NUMBER, cipher
from tests.web.conftest import COUNTED, Web, count_rows, csrf_token

TABLES = (*COUNTED, "wf_deadlines", "case_parties")
STEPS = ("establishment", "received", "person", "age-group", "sanction", "dates", "description", "original-contact",
         "other-bodies", "risk", "assign")


def user(web: Web, email: str) -> User:
    with web.database.session() as s:
        found = s.scalars(select(User).where(User.email == email)).one()
        s.expunge(found)
        return found


def answers(web: Web) -> dict[str, dict[str, Any]]:
    staff = user(web, web.world.staff)
    return {
        "establishment": {"establishment_id": str(web.world.establishment_id)},
        "received": {"received_date": ["16", "4", "2025"], "received_time": "10:30", "channel": "imb_application"},
        "person": {"detainee_name": CANARY_NAME, "detainee_number": CANARY_NUMBER,
                   "detainee_date_of_birth": ["14", "3", "1987"]},
        "age-group": {"age_group": "adult"},
        "sanction": {"sanction_types": ["loss_of_job_or_activity", "transfer"]},
        # Three date inputs, as after "Add another date" twice (a blank one is dropped).
        "dates": {"detriment_date_1": ["8", "4", "2025"], "detriment_date_2": ["", "", ""],
                  "detriment_date_3": ["9", "4", "2025"]},
        "description": {"description": CANARY_DESCRIPTION},
        "original-contact": {"original_contact_date": ["7", "4", "2025"]},
        "other-bodies": {"party_bodies": ["HMIP"]},
        "risk": {"risk": "high"},
        "assign": {"assigned_user_id": str(staff.id)},
    }


class Flow:
    """One browser: records every URL it asked for and every redirect it was sent to."""

    def __init__(self, web: Web, email: str) -> None:
        self.web = web
        self.client: FlaskClient = web.sign_in(email)
        self.urls: list[str] = []

    def get(self, path: str) -> Any:
        self.urls.append(path)
        response = self.client.get(path)
        self.urls.append(response.headers.get("Location", ""))
        return response

    def post(self, path: str, data: dict[str, Any]) -> Any:
        page = self.get(path)
        assert page.status_code == 200, (path, page.status_code)
        response = self.client.post(path, data={**data, "csrf_token": csrf_token(page.get_data(as_text=True))})
        self.urls.append(path)
        self.urls.append(response.headers.get("Location", ""))
        return response

    def answer_all(self, data: dict[str, dict[str, Any]]) -> None:
        for i, step in enumerate(STEPS):
            response = self.post(f"/cases/new/{step}", data[step])
            assert response.status_code == 302, (step, response.get_data(as_text=True)[:3000])
            expected = f"/cases/new/{STEPS[i + 1]}" if i + 1 < len(STEPS) else "/cases/new/check"
            assert response.headers["Location"] == expected

    def cookie(self) -> str:
        found = self.client.get_cookie("reprisals_session")
        assert found is not None
        return found.value

    def session_data(self) -> dict[str, Any]:
        serializer = self.web.app.session_interface.get_signing_serializer(self.web.app)  # type: ignore[attr-defined]
        data: dict[str, Any] = serializer.loads(self.cookie())
        return data


def error_summary(html: str, message: str, field_id: str) -> None:
    assert "govuk-error-summary" in html, html[:3000]
    assert message in html, (message, html[:5000])
    assert f'href="#{field_id}"' in html, (field_id, html[:5000])
    assert 'id="' + field_id + '"' in html  # the link lands on a field
    assert "<title>Error:" in html


def test_reporting_a_concern_end_to_end(web: Web) -> None:
    before = count_rows(web.database, TABLES)
    flow = Flow(web, web.world.lead)
    start = flow.get("/cases/new").get_data(as_text=True)
    assert "Start now" in start and 'href="/cases/new/establishment"' in start
    flow.answer_all(answers(web))
    assert count_rows(web.database, TABLES) == before  # nothing written before Submit
    check = flow.get("/cases/new/check").get_data(as_text=True)
    for shown in ("HMP Thornbury Fen", "16 April 2025 at 10:30", "IMB application", CANARY_NAME, CANARY_NUMBER,
                  "14 March 1987", "18 or over", "Loss of job or activity", "Transfer", "8 April 2025",
                  "9 April 2025", CANARY_DESCRIPTION, "7 April 2025", "HM Inspectorate of Prisons", "High"):
        assert shown in check, shown
    assert CANARY_NAME not in check.split("<title>")[1].split("</title>")[0]
    response = flow.post("/cases/new/check", {})
    assert response.status_code == 302 and response.headers["Location"] == "/cases/new/done"
    done = flow.get("/cases/new/done").get_data(as_text=True)
    assert "Concern reported" in done and "govuk-panel" in done
    after = count_rows(web.database, TABLES)
    assert after["cases"] == before["cases"] + 1 and after["detainees"] == before["detainees"] + 1
    staff = user(web, web.world.staff)
    lead = user(web, web.world.lead)
    with web.database.session() as s:
        case = s.scalars(select(Case).order_by(Case.id.desc())).first()
        assert case is not None
        assert f'href="/cases/{case.reference}"' in done
        assert case.stage == "reported" and case.establishment_id == web.world.establishment_id
        assert case.received_at.isoformat().startswith("2025-04-16T09:30")  # 10:30 BST
        assert case.channel.value == "imb_application" and case.age_group.value == "adult"
        assert case.sanction_types == ["loss_of_job_or_activity", "transfer"]
        assert case.detriment_dates == ["2025-04-08", "2025-04-09"]
        assert case.original_contact_date == date(2025, 4, 7)
        assert case.party_codes == {"HMIP"} and case.risk.value == "high"
        assert case.assigned_user_id == staff.id and case.receiving_user_id == lead.id
        told = s.scalars(select(OutboxMessage).where(OutboxMessage.template == "case_assigned")).all()
        assert {(m.channel, m.recipient) for m in told} == {("inapp", str(staff.id)), ("log", staff.email)}
        assert all(m.context["reference"] == case.reference for m in told)
        assert read_description(cipher(), case) == CANARY_DESCRIPTION
        actor = s.get(User, lead.id)
        assert actor is not None
        identity = view_identity(s, web.rt.engine, cipher(), actor, case, "checking the test", web.clock.now())
        assert (identity.name, identity.number, identity.date_of_birth) == (CANARY_NAME, CANARY_NUMBER, CANARY_DOB)
    # the draft is gone: a new report starts empty
    assert drafts(web) == []
    assert flow.get("/cases/new/check").headers["Location"] == "/cases/new/establishment"
    assert CANARY_NAME not in flow.get("/cases/new/person").get_data(as_text=True)
    for url in flow.urls:
        for secret in (CANARY_NAME, CANARY_NUMBER, "Zebediah", "1987", "CANARYTEXT"):
            assert secret not in url


def drafts(web: Web) -> list[tuple[int, str]]:
    """The stored drafts: (session id, ciphertext)."""
    return [(r.session_id, r.ciphertext) for r in
            web.database.raw("SELECT session_id, ciphertext FROM report_drafts ORDER BY session_id")]


def test_the_draft_is_ciphertext_on_the_server_bound_to_the_session(web: Web) -> None:
    flow = Flow(web, web.world.staff)
    data = answers(web)
    for step in STEPS[:5]:
        assert flow.post(f"/cases/new/{step}", data[step]).status_code == 302
    raw = flow.cookie()
    decoded = json.dumps(flow.session_data())
    [(session_id, ciphertext)] = drafts(web)
    for secret in (CANARY_NAME, "Zebediah", CANARY_NUMBER, "CANARYTEXT42"):
        assert secret not in raw and secret not in decoded and secret not in ciphertext
    assert len(raw) < 1000  # the cookie names the session; it carries no answers
    # another session of the same person does not see it
    other = Flow(web, web.world.staff)
    assert CANARY_NAME not in other.get("/cases/new/person").get_data(as_text=True)
    assert other.get("/cases/new/check").headers["Location"] == "/cases/new/establishment"
    # ciphertext moved to another session's row is refused there (and dropped), not decrypted
    assert other.post("/cases/new/establishment", data["establishment"]).status_code == 302
    other_id = next(sid for sid, _ in drafts(web) if sid != session_id)
    web.database.raw("UPDATE report_drafts SET ciphertext = :c WHERE session_id = :s", c=ciphertext, s=other_id)
    assert CANARY_NAME not in other.get("/cases/new/person").get_data(as_text=True)
    assert other.get("/cases/new/check").headers["Location"] == "/cases/new/establishment"
    # the first session still has its own
    assert CANARY_NAME in flow.get("/cases/new/person").get_data(as_text=True)
    # signing out deletes the draft
    home = flow.client.get("/").get_data(as_text=True)
    flow.client.post("/sign-out", data={"csrf_token": csrf_token(home)})
    assert session_id not in {sid for sid, _ in drafts(web)}
    again = Flow(web, web.world.staff)
    assert again.get("/cases/new/check").headers["Location"] == "/cases/new/establishment"


def test_a_long_description_is_kept_through_the_flow_and_stored_whole(web: Web) -> None:
    flow = Flow(web, web.world.lead)
    data = answers(web)
    long_text = ("On the wing after the visit, " + "the officer said things would get harder. " * 300)[:9_500]
    data["description"] = {"description": long_text}
    flow.answer_all(data)
    assert long_text in flow.get("/cases/new/check").get_data(as_text=True)
    assert flow.post("/cases/new/check", {}).status_code == 302
    with web.database.session() as s:
        case = s.scalars(select(Case).order_by(Case.id.desc())).first()
        assert case is not None and read_description(cipher(), case) == long_text.strip()
    assert drafts(web) == []


def test_the_scheduler_deletes_the_draft_of_a_session_left_idle_whose_browser_never_comes_back(web: Web) -> None:
    from web.scheduler import run_sweep

    left = Flow(web, web.world.staff)
    assert left.post("/cases/new/establishment", answers(web)["establishment"]).status_code == 302
    working = Flow(web, web.world.lead)
    assert working.post("/cases/new/establishment", answers(web)["establishment"]).status_code == 302
    web.clock.advance(timedelta(minutes=20))
    assert working.get("/cases/new/person").status_code == 200  # still in use: touched
    run_sweep(web.rt)
    assert len(drafts(web)) == 2  # nobody idle yet
    web.clock.advance(timedelta(minutes=11))  # the first idle for 31 min, the second for 11
    run_sweep(web.rt)
    [(kept, _)] = drafts(web)  # the idle one is gone without its browser ever coming back
    owner = web.database.raw("SELECT u.email FROM web_sessions w JOIN users u ON u.id = w.user_id WHERE w.id = :i",
                             i=kept)
    assert [r.email for r in owner] == [web.world.lead]


def test_drafts_end_with_their_session_when_it_times_out_and_are_purged_after_twelve_hours(web: Web) -> None:
    idle = Flow(web, web.world.staff)
    assert idle.post("/cases/new/establishment", answers(web)["establishment"]).status_code == 302
    web.clock.advance(timedelta(minutes=31))  # idle: the session ends when next seen, and its draft with it
    assert idle.client.get("/cases/new/person").status_code == 302
    assert drafts(web) == []

    abandoned = Flow(web, web.world.staff)  # never seen again: its session is not ended by anyone
    assert abandoned.post("/cases/new/establishment", answers(web)["establishment"]).status_code == 302
    web.clock.advance(timedelta(hours=12, minutes=1))
    fresh = Flow(web, web.world.lead)
    assert fresh.post("/cases/new/establishment", answers(web)["establishment"]).status_code == 302
    assert len(drafts(web)) == 1  # the abandoned one went when another was saved


def test_check_answers_change_links_return_to_check_answers(web: Web) -> None:
    flow = Flow(web, web.world.lead)
    flow.answer_all(answers(web))
    check = flow.get("/cases/new/check").get_data(as_text=True)
    for step in STEPS:
        assert f'href="/cases/new/{step}?change=1"' in check
    page = flow.get("/cases/new/risk?change=1").get_data(as_text=True)
    assert re.search(r'<a href="/cases/new/check" class="govuk-back-link"', page), page[:4000]
    assert 'value="high" checked' in page  # the answer so far
    response = flow.post("/cases/new/risk?change=1", {"risk": "urgent"})
    assert response.headers["Location"] == "/cases/new/check"
    check = flow.get("/cases/new/check").get_data(as_text=True)
    assert re.search(r"Risk\s*</dt>\s*<dd[^>]*>\s*Urgent", check)
    response = flow.post("/cases/new/person?change=1", {"detainee_name": "Another Name", "detainee_number": "",
                                                        "detainee_date_of_birth": ["", "", ""]})
    assert response.headers["Location"] == "/cases/new/check"
    check = flow.get("/cases/new/check").get_data(as_text=True)
    assert "Another Name" in check and CANARY_NAME not in check and "Not given" in check
    assert flow.post("/cases/new/check", {}).status_code == 302
    with web.database.session() as s:
        case = s.scalars(select(Case).order_by(Case.id.desc())).first()
        assert case is not None and case.risk.value == "urgent" and case.detainee.number_ciphertext is None


def test_each_step_refuses_bad_answers_with_an_error_summary_and_saves_nothing(web: Web) -> None:
    tomorrow = web.clock.now().date() + timedelta(days=2)
    future = [str(tomorrow.day), str(tomorrow.month), str(tomorrow.year)]
    today = web.clock.now().date()
    blank = ["", "", ""]
    ok = answers(web)
    cases: list[tuple[str, dict[str, Any], str, str]] = [
        ("establishment", {"establishment_id": ""}, "Select the establishment", "establishment_id"),
        ("establishment", {"establishment_id": "999999"}, "Select an establishment from the list", "establishment_id"),
        ("received", {**ok["received"], "received_date": blank}, "Enter the date the concern was received",
         "received_date-day"),
        ("received", {**ok["received"], "received_date": ["31", "2", "2025"]},
         "The date the concern was received must be a real date", "received_date-day"),
        ("received", {**ok["received"], "received_date": ["16", "", "2025"]},
         "The date the concern was received must include a month", "received_date-day"),
        ("received", {**ok["received"], "received_date": future},
         "The date the concern was received must be today or in the past", "received_date-day"),
        ("received", {**ok["received"], "received_time": "25:99"}, "Enter the time received using the 24-hour clock",
         "received_time"),
        ("received", {**ok["received"], "channel": ""}, "Select how the concern was received", "channel"),
        ("received", {**ok["received"], "channel": "pigeon"}, "Select how the concern was received", "channel"),
        ("person", {**ok["person"], "detainee_name": "  "}, "Enter the person&#39;s name", "detainee_name"),
        ("person", {**ok["person"], "detainee_name": "x" * 201}, "Name must be 200 characters or fewer",
         "detainee_name"),
        ("person", {**ok["person"], "detainee_date_of_birth": [str(today.day), str(today.month), str(today.year)]},
         "Date of birth must be in the past", "detainee_date_of_birth-day"),
        ("person", {**ok["person"], "detainee_date_of_birth": ["1", "1", "87"]}, "Year must include 4 numbers",
         "detainee_date_of_birth-day"),
        ("age-group", {"age_group": ""}, "Select the person&#39;s age group", "age_group"),
        ("sanction", {"sanction_types": []}, "Select at least one kind of sanction", "sanction_types"),
        ("sanction", {"sanction_types": ["flogging"]}, "Select kinds of sanction from the list", "sanction_types"),
        ("description", {"description": ""}, "Describe what happened", "description"),
        ("description", {"description": "x" * 10_001}, "Description must be 10,000 characters or fewer",
         "description"),
        ("dates", {**ok["dates"], "detriment_date_2": future}, "The second date must be today or in the past",
         "detriment_date_2-day"),
        ("dates", {"detriment_date_1": ["30", "2", "2025"]}, "The date it happened must be a real date",
         "detriment_date_1-day"),
        ("age-group", {"age_group": "child"}, "The date of birth shows the person was 18 or over when the concern "
         "was received: check the date of birth or the person&#39;s age", "age_group"),
        ("original-contact", {"original_contact_date": ["x", "4", "2025"]},
         "The date of the contact must be a real date", "original_contact_date-day"),
        ("other-bodies", {"party_bodies": ["NOPE"]}, "Select bodies from the list", "party_bodies"),
        ("other-bodies", {"party_bodies": ["IMB"]}, "Select bodies from the list", "party_bodies"),  # their own
        ("risk", {"risk": ""}, "Select the risk to the person", "risk"),
        ("assign", {"assigned_user_id": "123456"}, "Select a person from the list", "assigned_user_id"),
    ]
    flow = Flow(web, web.world.lead)
    flow.answer_all(ok)
    before = count_rows(web.database, TABLES)
    sealed = drafts(web)
    for step, data, message, field_id in cases:
        response = flow.post(f"/cases/new/{step}", data)
        assert response.status_code == 200, (step, message)
        error_summary(response.get_data(as_text=True), message, field_id)
        assert drafts(web) == sealed, (step, message)  # the draft is as it was
    assert count_rows(web.database, TABLES) == before
    # the contact cannot come after the concern was received (checked against the earlier answer)
    response = flow.post("/cases/new/original-contact", {"original_contact_date": ["17", "4", "2025"]})
    error_summary(response.get_data(as_text=True), "must be on or before the date the concern was received",
                  "original_contact_date-day")


def test_a_refused_submit_writes_nothing_and_shows_the_step(web: Web) -> None:
    flow = Flow(web, web.world.lead)
    flow.answer_all(answers(web))
    # the establishment closes while the report is being written
    with web.database.engine.begin() as conn:
        conn.execute(update(Establishment).where(Establishment.id == web.world.establishment_id).values(active=False))
    before = count_rows(web.database, TABLES)
    response = flow.post("/cases/new/check", {})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    error_summary(html, "Establishment is not a known establishment", "establishment_id")
    assert 'href="/cases/new/check"' in html  # back to check answers after fixing it
    assert count_rows(web.database, TABLES) == before
    assert len(drafts(web)) == 1  # the answers are kept


def test_a_step_without_its_csrf_token_is_refused_and_saves_nothing(web: Web) -> None:
    flow = Flow(web, web.world.lead)
    ok = answers(web)
    assert flow.post("/cases/new/establishment", ok["establishment"]).status_code == 302
    before = drafts(web)
    response = flow.client.post("/cases/new/person", data=ok["person"])
    assert response.status_code == 400
    assert CANARY_NAME not in response.get_data(as_text=True)
    assert drafts(web) == before
    flow.answer_all(ok)
    rows = count_rows(web.database, TABLES)
    assert flow.client.post("/cases/new/check", data={}).status_code == 400
    assert count_rows(web.database, TABLES) == rows


def test_only_staff_and_leads_may_report(web: Web) -> None:
    for email in (web.world.auditor, web.world.admin):
        client = web.sign_in(email)
        assert client.get("/cases/new").status_code == 403
        assert client.get("/cases/new/person").status_code == 403
    assert web.sign_in(web.world.staff).get("/cases/new/nonsense").status_code == 404


def test_staff_reporting_are_assigned_by_default(web: Web) -> None:
    flow = Flow(web, web.world.staff)
    data = answers(web)
    data["assign"] = {"assigned_user_id": ""}
    flow.answer_all(data)
    assert "You" in flow.get("/cases/new/check").get_data(as_text=True)
    assert flow.post("/cases/new/check", {}).status_code == 302
    staff = user(web, web.world.staff)
    with web.database.session() as s:
        case = s.scalars(select(Case).order_by(Case.id.desc())).first()
        assert case is not None and case.assigned_user_id == staff.id


def test_a_second_submit_of_the_same_draft_opens_no_second_case(web: Web, monkeypatch: Any) -> None:
    """Two submits of one draft (a double click on PostgreSQL, another tab): the one that finds the draft
    already deleted by the other rolls its case back. The other submit's delete is played inside this
    one's transaction, just before its own."""
    import web.report as cases_module

    real_open_case = cases_module.open_case

    def open_case_while_the_other_submit_commits(session: Any, *args: Any, **kwargs: Any) -> Any:
        case = real_open_case(session, *args, **kwargs)
        session.execute(text("DELETE FROM report_drafts"))
        return case

    flow = Flow(web, web.world.lead)
    flow.answer_all(answers(web))
    before = count_rows(web.database, TABLES)
    monkeypatch.setattr(cases_module, "open_case", open_case_while_the_other_submit_commits)
    response = flow.post("/cases/new/check", {})
    assert response.status_code == 302 and response.headers["Location"] == "/cases/"
    assert count_rows(web.database, TABLES) == before  # no second case


# -- one question per page, the person's number, the date of birth, the dates, the risk, the confirmation ----


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # forms and pages: one database proves them
def test_the_persons_number_is_named_as_the_establishment_names_it(web: Web) -> None:
    from reprisals.models import EstablishmentType
    from tests.factories import make_establishment

    with web.database.session() as s:
        centre = make_establishment(s, name="Harmondsworth IRC", type=EstablishmentType.IMMIGRATION_REMOVAL_CENTRE)
        centre_id = centre.id
        s.commit()
    flow = Flow(web, web.world.lead)
    assert flow.post("/cases/new/establishment", {"establishment_id": str(web.world.establishment_id)}).status_code \
        == 302
    assert "Prison number (optional)" in flow.get("/cases/new/person").get_data(as_text=True)
    data = answers(web)
    data["establishment"] = {"establishment_id": str(centre_id)}
    flow.answer_all(data)
    page = flow.get("/cases/new/person").get_data(as_text=True)
    assert "Home Office reference (optional)" in page and "For example, B1234567" in page
    assert "Prison number" not in page
    response = flow.post("/cases/new/person", {**data["person"], "detainee_number": "B" * 41})
    error_summary(response.get_data(as_text=True), "Home Office reference must be 40 characters or fewer",
                  "detainee_number")
    check = flow.get("/cases/new/check").get_data(as_text=True)
    assert re.search(r"Home Office reference\s*</dt>", check) and "Prison number" not in check


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # forms and pages: one database proves them
def test_a_date_of_birth_that_contradicts_the_age_is_questioned_on_either_answer(web: Web) -> None:
    flow = Flow(web, web.world.lead)
    data = answers(web)
    flow.answer_all(data)  # born 1987, 18 or over

    def born(day: str, month: str, year: str) -> dict[str, Any]:
        return {**data["person"], "detainee_date_of_birth": [day, month, year]}

    # A child's date of birth, the age still "18 or over": the age is asked again, the error saying to check
    # one or the other (Back leads to the date of birth).
    question = "/cases/new/age-group?change=1&check=1"
    response = flow.post("/cases/new/person?change=1", born("1", "6", "2010"))
    assert response.status_code == 302 and response.headers["Location"] == question
    under = ("The date of birth shows the person was under 18 when the concern was received: check the date of "
             "birth or the person&#39;s age")
    error_summary(flow.get(question).get_data(as_text=True), under, "age_group")
    assert flow.get("/cases/new/check").headers["Location"] == question  # not opened while it contradicts
    response = flow.post("/cases/new/age-group?change=1", {"age_group": "adult"})
    error_summary(response.get_data(as_text=True), under, "age_group")
    assert flow.post("/cases/new/age-group?change=1", {"age_group": "child"}).headers["Location"] == "/cases/new/check"
    # 18 on the day the concern was received (16 April 2025): an adult, so "Under 18" is questioned.
    response = flow.post("/cases/new/person?change=1", born("16", "4", "2007"))
    assert response.headers["Location"] == question
    assert "18 or over when the concern was received" in flow.get(question).get_data(as_text=True)
    # The day before they turned 18, a child: no question.
    response = flow.post("/cases/new/person?change=1", born("17", "4", "2007"))
    assert response.headers["Location"] == "/cases/new/check"


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # forms and pages: one database proves them
def test_add_another_date_and_remove_are_buttons_that_work_without_javascript(web: Web) -> None:
    flow = Flow(web, web.world.lead)
    page = flow.get("/cases/new/dates").get_data(as_text=True)
    assert page.count('name="detriment_date_1"') == 3 and 'name="detriment_date_2"' not in page
    assert re.search(r'<button[^>]*name="add"|<input[^>]*name="add"', page) and "Add another date" in page
    assert 'name="remove"' not in page  # one date: nothing to remove
    # Add another: what was typed is kept (not yet checked), and one more date input follows.
    response = flow.post("/cases/new/dates", {"detriment_date_1": ["8", "4", "2025"], "add": "Add another date"})
    assert response.status_code == 302 and response.headers["Location"] == "/cases/new/dates#detriment_date_2-day"
    page = flow.get("/cases/new/dates").get_data(as_text=True)
    assert 'name="detriment_date_2"' in page and 'value="8"' in page
    assert page.count('name="remove"') == 2 and "Remove<span class=\"govuk-visually-hidden\"> date 2</span>" in page
    # Remove the first: the second becomes the first.
    response = flow.post("/cases/new/dates", {"detriment_date_1": ["8", "4", "2025"],
                                              "detriment_date_2": ["9", "4", "2025"], "remove": "1"})
    assert response.status_code == 302
    page = flow.get("/cases/new/dates").get_data(as_text=True)
    assert 'name="detriment_date_2"' not in page and 'value="9"' in page and 'value="8"' not in page
    # Up to ten: then no "Add another date".
    many = {f"detriment_date_{i}": [str(i), "4", "2025"] for i in range(1, 11)}
    assert flow.post("/cases/new/dates", {**many, "add": "Add another date"}).status_code == 200
    assert flow.post("/cases/new/dates", many).status_code == 302  # Continue
    page = flow.get("/cases/new/dates").get_data(as_text=True)
    assert 'name="detriment_date_10"' in page and "Add another date" not in page


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # forms and pages: one database proves them
def test_the_description_counts_its_characters_and_the_risk_levels_say_what_they_mean(web: Web) -> None:
    flow = Flow(web, web.world.lead)
    page = flow.get("/cases/new/description").get_data(as_text=True)
    assert 'data-module="govuk-character-count"' in page and 'data-maxlength="10000"' in page
    assert re.search(r'<h1 class="govuk-label-wrapper">\s*<label class="govuk-label govuk-label--l"', page)
    page = flow.get("/cases/new/risk").get_data(as_text=True)
    hints = re.findall(r'class="govuk-hint govuk-radios__hint">\s*([^<]+?)\s*</div>', page)
    assert len(hints) == 3
    assert hints[0].startswith("The person is at immediate risk of serious harm. Deadlines run in hours, weekends "
                               "and holidays included: triage decision within 4 hours")
    assert "Deadlines in working days: consent and risk recorded within 1 working day" in hints[1]


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # forms and pages: one database proves them
def test_check_answers_in_cards_and_the_confirmation_says_what_is_due_and_who_was_told(web: Web) -> None:
    from reprisals.vocabulary import moment_words
    from workflow.models import DeadlineRow

    flow = Flow(web, web.world.lead)
    flow.answer_all(answers(web))
    check = flow.get("/cases/new/check").get_data(as_text=True)
    titles = re.findall(r'<h2 class="govuk-summary-card__title">\s*([^<]+?)\s*</h2>', check)
    assert titles == ["The person", "What happened", "The case"]
    assert check.index(CANARY_NAME) < check.index("Loss of job or activity") < check.index("HMP Thornbury Fen")
    assert re.search(r"<button[^>]*>\s*Open the case\s*</button>", check) and ">Submit<" not in check
    assert flow.post("/cases/new/check", {}).status_code == 302
    done = flow.get("/cases/new/done").get_data(as_text=True)
    staff = user(web, web.world.staff)
    with web.database.session() as s:
        case = s.scalars(select(Case).order_by(Case.id.desc())).first()
        assert case is not None
        due = s.scalars(select(DeadlineRow.due_at).where(DeadlineRow.instance_id == case.instance_id)).one()
    assert "Consent and risk recorded" in done and f"Due by {moment_words(due)}" in done
    assert "17 April 2025" in moment_words(due)  # high risk: 1 working day after Wednesday 16 April
    assert f"{staff.name}, the member of staff it is assigned to" in done
    assert "HM Inspectorate of Prisons" not in done  # a party body with no lead is told nothing
    for secret in (CANARY_NAME, CANARY_NUMBER, CANARY_DESCRIPTION):
        assert secret not in done
