"""Action forms ask only what applies to the case, and the server agrees (decision 31): the consent override
only where nothing may be disclosed without one; recipients and copies only those whose copy rule fits the
establishment and the person (the ones required ticked); a field needed after one answer revealed under it
and ignored otherwise; "record only" only without consent; an optional radio can be taken back."""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa

from reprisals.models import Case, Establishment, User
from reprisals.services import advance_case, open_case
from tests.conftest import DATABASES
from tests.factories import REFER, case_data, cipher
from tests.web.conftest import Web, case_state, csrf_token
from tests.web.test_case_actions import Pages, d
from workflow.models import HistoryEvent


def _open(web: Web, consent: str, *, age_group: str = "adult", refer: bool = False) -> str:
    """A version 2 case of the world's prison at triage (or referred), with this consent."""
    with web.database.session() as s:
        lead = s.scalars(sa.select(User).where(User.email == web.world.lead)).one()
        est = s.get(Establishment, web.world.establishment_id)
        assert est is not None
        now = web.clock.now()
        case = open_case(s, web.rt.engine, cipher(), lead, now, case_data(est, age_group=age_group))
        advance_case(s, web.rt.engine, lead, case, "record_consent_and_risk", {"consent": consent, "risk": "high"},
                     now)
        if refer:
            fields: dict[str, Any] = dict(REFER)
            if consent == "none":
                fields.update(override_ground="risk_to_life", override_reason="Threats.")
            if age_group == "child":
                fields["recipients"] = ["head_of_establishment", "youth_custody_service"]
            advance_case(s, web.rt.engine, lead, case, "refer", fields, now)
        s.commit()
        return case.reference


def _last_fields(web: Web, ref: str) -> dict[str, Any]:
    with web.database.session() as s:
        case = s.scalars(sa.select(Case).where(Case.reference == ref)).one()
        event = s.scalars(sa.select(HistoryEvent).where(HistoryEvent.instance_id == case.instance_id)
                          .order_by(HistoryEvent.seq.desc())).first()
        assert event is not None
        return dict(event.data.get("fields") or {})


def _override(web: Web, ref: str) -> str | None:
    with web.database.session() as s:
        return s.scalars(sa.select(Case.consent_override_reason).where(Case.reference == ref)).one()


def _checkbox_values(html: str, name: str) -> dict[str, bool]:
    """The checkboxes named ``name``: value -> ticked."""
    return {value: " checked" in tag for tag, value in
            re.findall(rf'(<input[^>]*name="{name}"[^>]*value="([^"]*)"[^>]*>)', html)}


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # forms and pages: one database proves them
def test_with_consent_the_override_is_not_asked_and_a_posted_one_is_never_stored(web: Web) -> None:
    ref = web.world.triaged  # consent full, an adult in a prison
    lead = Pages(web, web.world.lead, ref)
    form = lead.form("refer")
    assert 'name="override_ground"' not in form and 'name="override_reason"' not in form
    # Only the head of the establishment fits an adult in a prison, and it is ticked to begin with.
    assert _checkbox_values(form, "recipients") == {"head_of_establishment": True}
    lead.act("refer", {"recipients": ["head_of_establishment"], "occurred_on": d(),
                       "override_ground": "risk_to_life", "override_reason": "Typed on another form."})
    fields = _last_fields(web, ref)
    assert set(fields) == {"recipients"} and _override(web, ref) is None


def test_without_consent_the_override_is_asked_its_reason_required_and_its_answer_can_be_taken_back(
        web: Web) -> None:
    ref = _open(web, "none")
    lead = Pages(web, web.world.lead, ref)
    form = lead.form("refer")
    ground = form[form.index('name="override_ground"') - 400:form.index('name="override_reason"')]
    assert 'value="risk_to_life"' in ground and 'value="child_safeguarding"' in ground
    assert 'class="govuk-radios__divider">or<' in ground and re.search(r'value=""[^>]*>\s*<label[^>]*>\s*None of these',
                                                                     ground)
    assert "Needed if your answer to ground for referring without consent is risk to life or child " \
           "safeguarding." in form
    before = case_state(web.database, ref)
    html = lead.submit("refer", {"recipients": ["head_of_establishment"], "override_ground": "risk_to_life",
                                 "occurred_on": d()}).get_data(as_text=True)
    assert 'href="#override_reason"' in html and "Enter why the lack of consent is overridden" in html
    # "None of these": the answer taken back; no override, so the guard refuses, in its words.
    html = lead.submit("refer", {"recipients": ["head_of_establishment"], "override_ground": "",
                                 "occurred_on": d()}).get_data(as_text=True)
    assert "The person has not consented: nothing may be sent to the establishment unless a lead overrides" in html
    assert case_state(web.database, ref) == before
    lead.act("refer", {"recipients": ["head_of_establishment"], "override_ground": "risk_to_life",
                       "override_reason": "Threats of serious violence.", "occurred_on": d()})
    assert _override(web, ref) is not None


def test_a_childs_referral_offers_and_ticks_the_youth_custody_service_and_not_copies_that_do_not_fit(
        web: Web) -> None:
    ref = _open(web, "full", age_group="child")
    lead = Pages(web, web.world.lead, ref)
    form = lead.form("refer")
    assert _checkbox_values(form, "recipients") == {"head_of_establishment": True, "youth_custody_service": True}
    assert "The Youth Custody Service must be copied: the person is a child." in form
    # A copy whose rule does not fit (the prison is not an immigration removal centre): refused, nothing changes.
    before = case_state(web.database, ref)
    html = lead.submit("refer", {"recipients": ["head_of_establishment", "youth_custody_service",
                                                "home_office_immigration_enforcement"],
                                 "occurred_on": d()}).get_data(as_text=True)
    assert "Select who the referral is sent to from the list" in html
    assert case_state(web.database, ref) == before


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # forms and pages: one database proves them
def test_the_other_recipient_is_revealed_under_other_and_ignored_when_another_is_chosen(web: Web) -> None:
    ref = _open(web, "full", refer=True)
    lead = Pages(web, web.world.lead, ref)
    form = lead.form("escalate")
    other = re.search(r'<input[^>]*name="recipient"[^>]*value="other"[^>]*data-aria-controls="([^"]+)"', form)
    assert other is not None
    start = form.index(f'id="{other[1]}"')
    assert "govuk-radios__conditional" in form[form.rfind("<div", 0, start):start]
    assert start < form.index('name="recipient_other"') < form.index("</fieldset>", start)  # inside its answer
    assert form.count('name="recipient_other"') == 1  # asked once
    # Escalation choices the case rules out (copies for a child or an immigration centre) are not offered.
    assert 'value="youth_custody_service"' not in form and 'value="home_office_immigration_enforcement"' not in form
    # The name typed before the answer was changed is never stored.
    lead.act("escalate", {"reason": "overdue", "recipient": "hmpps", "recipient_other": "Typed then changed",
                          "occurred_on": d()})
    assert "recipient_other" not in _last_fields(web, ref)


@pytest.mark.parametrize("database", DATABASES[:1], indirect=True)  # forms and pages: one database proves them
def test_record_only_is_offered_only_without_consent(web: Web) -> None:
    with_consent = web.world.triaged
    lead = web.sign_in(web.world.lead)
    assert f"/cases/{with_consent}/actions/record_only" not in lead.get(f"/cases/{with_consent}").get_data(
        as_text=True)
    response = lead.get(f"/cases/{with_consent}/actions/record_only")
    assert response.status_code == 409 and "this person consented" in response.get_data(as_text=True)
    before = case_state(web.database, with_consent)
    token_page = lead.get(f"/cases/{with_consent}").get_data(as_text=True)
    html = lead.post(f"/cases/{with_consent}/actions/record_only", data={
        "reason": "No consent.", "csrf_token": csrf_token(token_page),
        "expected_version": str(before["version"]), "occurred_on": d()}).get_data(as_text=True)
    assert "Record only is for cases without consent" in html
    assert case_state(web.database, with_consent) == before

    without = _open(web, "none")
    assert f"/cases/{without}/actions/record_only" in lead.get(f"/cases/{without}").get_data(as_text=True)
    Pages(web, web.world.lead, without).act("record_only", {"reason": "No consent to go further.",
                                                            "occurred_on": d()})
