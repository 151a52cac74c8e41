"""Version 2's hand-offs through the API: a change of consent (narrowing it needs an override to disclose
anything more, full consent again lifts it), the urgent contact confirmed, the copy rules, the escalation's
recipient as a choice, the actions offered with their conditions — and a version 1 case beside a version 2
one. Every refusal states its reason and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from reprisals.models import Establishment, EstablishmentType, User
from reprisals.protocol import OVERRIDE_CONDITION
from reprisals.services import advance_case, open_case
from tests.factories import case_data, cipher, make_establishment
from tests.web.conftest import Web, case_state
from tests.web.test_api import Api, assert_no_identity, assert_problem, new_case_body

OVERRIDE = {"override_ground": "risk_to_life", "override_reason": "Threats of serious violence."}
HOE = ["head_of_establishment"]
NARROWED = ("the person narrowed or withdrew their consent: nothing more may be sent unless a lead overrides for "
            "risk to life or child safeguarding, with a reason")


class Hand:
    """One user's API client, with the moves these tests make."""

    def __init__(self, web: Web, email: str) -> None:
        self.web, self.api = web, Api(web, email)

    def case(self, ref: str) -> dict[str, Any]:
        response = self.api.get(f"/api/cases/{ref}")
        assert response.status_code == 200, response.get_data(as_text=True)
        assert_no_identity(response)
        return dict(response.get_json())

    def offers(self, ref: str) -> dict[str, list[str]]:
        """The actions offered now, each with its conditions."""
        return {a["name"]: a["conditions"] for a in self.case(ref)["allowed_actions"]}

    def post(self, ref: str, trigger: str, fields: dict[str, Any], **extra: Any) -> Any:
        body = {"expected_version": self.case(ref)["version"], "fields": fields, **extra}
        return self.api.post(f"/api/cases/{ref}/actions/{trigger}", body)

    def act(self, ref: str, trigger: str, fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
        response = self.post(ref, trigger, fields, **extra)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert_no_identity(response)
        return dict(response.get_json())

    def unlocked(self, ref: str) -> dict[str, Any]:
        """The case as read inside an unlock window (a reason given): free text and typed names in it."""
        response = self.api.post(f"/api/cases/{ref}/unlock", {"reason": "Checking the letters"})
        assert response.status_code == 200, response.get_data(as_text=True)
        return dict(response.get_json())

    def refused(self, ref: str, trigger: str, fields: dict[str, Any], status: int = 422) -> dict[str, Any]:
        """The action is refused with ``status`` and nothing about the case changes."""
        before = case_state(self.web.database, ref)
        response = self.post(ref, trigger, fields)
        problem = assert_problem(response, status)
        assert_no_identity(response)
        if status != 404:  # a 404 names no case: "There is no such action."
            assert problem["detail"].endswith("Nothing was saved."), problem
        assert case_state(self.web.database, ref) == before
        return problem

    def refused_because(self, ref: str, trigger: str, fields: dict[str, Any], reason: str) -> None:
        problem = self.refused(ref, trigger, fields)
        assert reason in problem["detail"], problem["detail"]
        assert ref in problem["detail"]

    def open(self, establishment_id: int | None = None, *, age_group: str = "adult", risk: str = "standard",
             consent: str = "full") -> str:
        """A new case (version 2, the default), consent and risk recorded: at triage."""
        body = new_case_body(self.web, age_group=age_group, risk=risk,
                             establishment_id=establishment_id or self.web.world.establishment_id)
        response = self.api.post("/api/cases", body)
        assert response.status_code == 201, response.get_data(as_text=True)
        ref = str(response.get_json()["reference"])
        self.act(ref, "record_consent_and_risk", {"consent": consent, "risk": risk})
        return ref


def overridden(web: Web, ref: str) -> str | None:
    """The override of consent recorded on the case (shown on its page as "Consent overridden")."""
    return web.database.raw("SELECT consent_override_reason FROM cases WHERE reference = :r", r=ref)[0][0]


def establishment(web: Web, type: EstablishmentType) -> int:
    with web.database.session() as s:
        est = make_establishment(s, type=type)
        s.commit()
        return est.id


@pytest.fixture
def lead(web: Web) -> Hand:
    return Hand(web, web.world.lead)


@pytest.fixture
def staff(web: Web) -> Hand:
    return Hand(web, web.world.staff)


# -- a change of consent -------------------------------------------------------------------------------


def test_narrowed_consent_needs_an_override_to_refer_until_full_consent_is_given_again(
        web: Web, lead: Hand, staff: Hand) -> None:
    ref = web.world.triaged  # consent full, an adult in a prison, assigned to staff
    offered = lead.offers(ref)
    assert offered["refer"] == [] and "record_only" not in offered  # the person consented
    assert "change_consent" in offered and "change_consent" in staff.offers(ref)
    assert "refer" not in staff.offers(ref)  # a lead's action

    lead.refused_because(ref, "change_consent", {"consent": "full", "reason": "Said it again."},
                         "consent is already recorded as 'full'; choose the consent the person gives now")
    problem = lead.refused(ref, "change_consent", {"consent": "anonymous"})
    assert problem["errors"] == {"reason": "Enter what the person said"}  # the protocol file's words

    done = staff.act(ref, "change_consent", {"consent": "anonymous", "reason": "Does not want to be named."})
    assert (done["stage"], done["consent"]) == ("triage", "anonymous")  # the stage stays
    assert done["history"][-1]["trigger"] == "change_consent" and done["history"][-1]["values"] == {
        "consent": "anonymous"}  # the reason is free text: never in the API
    assert lead.offers(ref)["refer"] == [OVERRIDE_CONDITION]
    assert "record_only" not in lead.offers(ref)
    lead.refused_because(ref, "refer", {"recipients": HOE}, NARROWED)
    lead.refused(ref, "refer", {"recipients": HOE, "override_ground": "risk_to_life"})  # a ground without a reason

    staff.act(ref, "change_consent", {"consent": "none", "reason": "Withdraws consent."})
    offered = lead.offers(ref)
    assert offered["refer"] == [OVERRIDE_CONDITION] and offered["record_only"] == []
    lead.refused_because(ref, "refer", {"recipients": HOE}, NARROWED)  # withdrawn after it was given
    # Anonymous again is still narrower than what was first given: the override is still needed.
    staff.act(ref, "change_consent", {"consent": "anonymous", "reason": "Anonymous is fine after all."})
    assert lead.offers(ref)["refer"] == [OVERRIDE_CONDITION]
    lead.refused_because(ref, "refer", {"recipients": HOE}, NARROWED)

    # Full consent again lifts it: an override is then refused, and the referral goes without one.
    staff.act(ref, "change_consent", {"consent": "full", "reason": "Agrees to be named."})
    assert lead.offers(ref)["refer"] == []
    lead.refused_because(ref, "refer", {"recipients": HOE, **OVERRIDE},
                         "consent was given, so there is nothing to override")
    assert lead.act(ref, "refer", {"recipients": HOE})["stage"] == "referred"

    # Never given: the same condition, in the words for a person who has not consented.
    never = lead.open(consent="none")
    offered = lead.offers(never)
    assert offered["refer"] == [OVERRIDE_CONDITION] and offered["record_only"] == []
    lead.refused_because(never, "refer", {"recipients": HOE}, "the person has not consented: nothing may be sent")


def test_escalating_and_rejecting_a_response_need_an_override_after_consent_is_narrowed(
        web: Web, lead: Hand) -> None:
    ref = web.world.triaged
    lead.act(ref, "refer", {"recipients": HOE})
    assert "change_consent" in lead.offers(ref)
    lead.act(ref, "change_consent", {"consent": "anonymous", "reason": "Does not want to be named any more."})
    assert lead.offers(ref)["escalate"] == [OVERRIDE_CONDITION]
    lead.refused_because(ref, "escalate", {"reason": "overdue", "recipient": "hmpps"}, NARROWED)
    assert overridden(web, ref) is None  # referred with consent: nothing overridden yet
    done = lead.act(ref, "escalate", {"reason": "overdue", "recipient": "hmpps", **OVERRIDE})
    assert done["stage"] == "escalated"
    # The ground is in the escalation's history; the case row holds an override beside consent 'none' only.
    assert done["history"][-1]["values"]["override_ground"] == "risk_to_life"
    assert overridden(web, ref) is None
    lead.act(ref, "record_response", {"responder": "central_authority", "summary": "Not addressed."})
    assert lead.offers(ref)["reject_response"] == [OVERRIDE_CONDITION]
    reject = {"reason": "It does not address the threats.", "recipient": "department"}
    lead.refused_because(ref, "reject_response", reject, NARROWED)
    rejected = lead.act(ref, "reject_response", {**reject, "override_ground": "child_safeguarding",
                                                 "override_reason": "A safeguarding concern."})
    assert rejected["stage"] == "escalated"
    assert rejected["history"][-1]["values"]["override_ground"] == "child_safeguarding"


# -- urgent contact ------------------------------------------------------------------------------------


def test_contact_is_confirmed_only_on_an_urgent_case_and_only_once(web: Web, lead: Hand) -> None:
    standard = web.world.triaged
    lead.act(standard, "refer", {"recipients": HOE})
    assert "confirm_contact" not in lead.offers(standard)
    lead.refused_because(standard, "confirm_contact", {"contact_with": "Duty governor"},
                         "contact is confirmed only on urgent cases (within 24 hours of the referral)")

    urgent = lead.open(risk="urgent")
    referred = lead.act(urgent, "refer", {"recipients": HOE})
    due = {d["name"]: d["due_at"] for d in referred["live_deadlines"]}
    assert set(due) == {"urgent_contact", "urgent_written_response"}
    assert lead.offers(urgent)["confirm_contact"] == []
    lead.refused(urgent, "confirm_contact", {"note": "Spoke to someone."})  # who, is required

    done = lead.act(urgent, "confirm_contact", {"contact_with": "Duty governor"})
    assert done["stage"] == "referred"
    assert {d["name"]: d["due_at"] for d in done["live_deadlines"]} == {
        "urgent_written_response": due["urgent_written_response"]}  # still running, as it was
    rows = {r.name: (r.status, r.closed_at is not None) for r in web.database.raw(
        "SELECT d.name, d.status, d.closed_at FROM wf_deadlines d JOIN cases c ON c.instance_id = d.instance_id "
        "WHERE c.reference = :r AND d.stage = 'referred'", r=urgent)}
    assert rows == {"urgent_contact": ("done", True), "urgent_written_response": ("open", False)}
    assert "confirm_contact" not in lead.offers(urgent)
    lead.refused_because(urgent, "confirm_contact", {"contact_with": "Governor"},
                         "contact with the establishment has already been confirmed")


# -- copies and recipients -----------------------------------------------------------------------------


def test_referrals_and_escalations_copy_whom_the_rules_require_and_no_one_else(web: Web, lead: Hand) -> None:
    child = lead.open(age_group="child")
    assert lead.offers(child)["refer"] == ["it must copy the Youth Custody Service"]
    lead.refused_because(child, "refer", {"recipients": HOE},
                         "it must copy the Youth Custody Service: the person is a child")
    lead.act(child, "refer", {"recipients": [*HOE, "youth_custody_service"]})
    assert lead.offers(child)["escalate"] == ["it must copy the Youth Custody Service"]
    lead.refused_because(child, "escalate", {"reason": "overdue", "recipient": "hmpps"},
                         "it must copy the Youth Custody Service: the person is a child")
    lead.act(child, "escalate", {"reason": "overdue", "recipient": "hmpps", "copies": ["youth_custody_service"]})

    adult = web.world.triaged
    lead.refused_because(adult, "refer", {"recipients": [*HOE, "youth_custody_service"]},
                         "the Youth Custody Service is copied only when the person is a child; that is not so "
                         "for this case, so remove it")
    lead.act(adult, "refer", {"recipients": HOE})
    lead.refused_because(adult, "escalate", {"reason": "overdue", "recipient": "hmpps",
                                             "copies": ["youth_custody_service"]},
                         "the Youth Custody Service is copied only when the person is a child")

    irc = lead.open(establishment(web, EstablishmentType.IMMIGRATION_REMOVAL_CENTRE))
    assert lead.offers(irc)["refer"] == ["it must copy Home Office Immigration Enforcement"]
    lead.refused_because(irc, "refer", {"recipients": HOE},
                         "it must copy Home Office Immigration Enforcement: the establishment is an immigration "
                         "removal centre or short-term holding facility")
    lead.act(irc, "refer", {"recipients": [*HOE, "home_office_immigration_enforcement"]})

    holding = lead.open(establishment(web, EstablishmentType.SHORT_TERM_HOLDING_FACILITY), age_group="child")
    assert lead.offers(holding)["refer"] == [
        "it must copy the Youth Custody Service, Home Office Immigration Enforcement"]

    escort = lead.open(establishment(web, EstablishmentType.ESCORT))
    assert lead.offers(escort)["refer"] == ["it must copy PECS contract management"]
    lead.refused_because(escort, "refer", {"recipients": [*HOE, "home_office_immigration_enforcement"]},
                         "it must copy PECS contract management: the concern is about an escort")
    lead.refused_because(escort, "refer", {"recipients": [*HOE, "pecs_contract_management",
                                                          "home_office_immigration_enforcement"]},
                         "Home Office Immigration Enforcement is copied only when the establishment is an "
                         "immigration removal centre or short-term holding facility")
    lead.act(escort, "refer", {"recipients": [*HOE, "pecs_contract_management"]})
    # The escalation may go to the authority a rule requires: that is its copy.
    done = lead.act(escort, "escalate", {"reason": "overdue", "recipient": "pecs_contract_management"})
    assert done["letters"][-1]["recipients"] == ["pecs_contract_management"]


def test_an_escalations_recipient_is_a_choice_with_other_named_by_hand(web: Web, lead: Hand) -> None:
    ref = web.world.triaged
    lead.act(ref, "refer", {"recipients": HOE})
    fields = next(a for a in lead.case(ref)["allowed_actions"] if a["name"] == "escalate")["fields"]
    assert fields["recipient"]["type"] == "choice"
    assert fields["recipient"]["choices"] == ["hmpps", "youth_custody_service", "home_office_immigration_enforcement",
                                              "pecs_contract_management", "department", "other"]
    assert fields["recipient_other"]["required_when"] == {"recipient": ["other"]}

    problem = lead.refused(ref, "escalate", {"reason": "overdue", "recipient": "Regional director"})
    assert problem["errors"] == {"recipient": "Select who the case is escalated to"}
    problem = lead.refused(ref, "escalate", {"reason": "overdue", "recipient": "other"})
    assert problem["errors"] == {"recipient_other": "Enter the name of the other recipient"}
    done = lead.act(ref, "escalate", {"reason": "overdue", "recipient": "other",
                                      "recipient_other": "Regional prison group director"})
    assert done["stage"] == "escalated"
    escalation = done["letters"][-1]
    assert (escalation["kind"], escalation["level"], escalation["recipients"]) == ("escalation", 1, [None])
    assert lead.unlocked(ref)["letters"][-1]["recipients"] == ["Regional prison group director"]


# -- version 1 beside version 2 ------------------------------------------------------------------------


def test_a_version_1_case_and_a_version_2_case_side_by_side(web: Web, lead: Hand) -> None:
    rt, world = web.rt, web.world
    refs: dict[int, str] = {}
    with web.database.session() as s:
        user = s.scalars(sa.select(User).where(User.email == world.lead)).one()
        est = s.get(Establishment, world.establishment_id)
        assert est is not None
        now = web.clock.now()
        for version in (1, 2):
            case = open_case(s, rt.engine, cipher(), user, now, case_data(est, risk="urgent"), spec_version=version)
            advance_case(s, rt.engine, user, case, "record_consent_and_risk", {"consent": "full", "risk": "urgent"},
                         now)
            refs[version] = case.reference
        versions = dict(s.execute(sa.text("SELECT c.reference, i.spec_version FROM cases c JOIN wf_instances i "
                                          "ON i.id = c.instance_id WHERE c.reference IN (:a, :b)"),
                                  {"a": refs[1], "b": refs[2]}).all())
        s.commit()
    assert versions == {refs[1]: 1, refs[2]: 2}
    v1, v2 = refs[1], refs[2]

    assert "change_consent" not in lead.offers(v1) and "change_consent" in lead.offers(v2)
    problem = lead.refused(v1, "change_consent", {"consent": "anonymous", "reason": "Narrows it."}, status=404)
    assert problem["detail"] == "There is no such action."
    for ref in (v1, v2):
        lead.act(ref, "refer", {"recipients": HOE})
    assert "confirm_contact" not in lead.offers(v1) and "confirm_contact" in lead.offers(v2)

    def recipient_field(ref: str) -> dict[str, Any]:
        action = next(a for a in lead.case(ref)["allowed_actions"] if a["name"] == "escalate")
        return dict(action["fields"]["recipient"])

    assert (recipient_field(v1)["type"], recipient_field(v1)["choices"]) == ("string", None)
    assert recipient_field(v2)["type"] == "choice" and "other" in recipient_field(v2)["choices"]
    named = {"reason": "overdue", "recipient": "Regional prison group director"}
    problem = lead.refused(v2, "escalate", named)
    assert "recipient" in problem["errors"]
    done = lead.act(v1, "escalate", named)
    assert done["stage"] == "escalated"
    assert done["letters"][-1]["recipients"] == [None]  # typed by hand: withheld until a reason is given
    assert lead.unlocked(v1)["letters"][-1]["recipients"] == ["Regional prison group director"]
