"""The message templates: every one rendered from what the real timer handler and Messenger queued
for real cases (whose detainee identity and description are the canaries of tests/factories.py), with
nothing identifying in the output or in the outbox row; a missing variable named, at render time and
at start-up; an unknown template failing only its own message.
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
import pytest
from sqlalchemy import select

import reprisals.runtime
from notifications.channels import InAppChannel, LogChannel
from notifications.models import FAILED, SENT, InboxItem, OutboxMessage
from notifications.outbox import deliver_due, enqueue
from notifications.templates import TemplateProblem, Templates
from reprisals.config import load_settings
from reprisals.deadlines import make_timer_handler
from reprisals.errors import ConfigurationError
from reprisals.messaging import ACCOUNT_TEMPLATES, SAMPLES, TEMPLATE_NAMES, Messenger, message_templates
from reprisals.models import Role
from reprisals.protocol import build_engine
from reprisals.runtime import Runtime
from reprisals.services import advance_case, assign_case, open_case
from tests.conftest import Database
from tests.factories import (
    CANARY_DESCRIPTION,
    CANARY_DOB,
    CANARY_NAME,
    CANARY_NUMBER,
    CONSENT,
    REFER,
    TEST_KEY,
    case_data,
    cipher,
    make_establishment,
    make_user,
)
from workflow.deadlines import Timers

LONDON = ZoneInfo("Europe/London")
BASE_URL = "https://reprisals.example.test"
ESTABLISHMENT = "HMP Thornbury Fen"
# Identity, the description, and what the establishment holds about the person (its name for them,
# their number, their date of birth — in any spelling — and where they are held).
CANARIES = [CANARY_NAME, "Zebediah", "Canarywhistle", CANARY_NUMBER, CANARY_DOB, "1987", "14 Mar",
            CANARY_DESCRIPTION, "CANARYTEXT42", "Kitchen job", ESTABLISHMENT, "Thornbury"]
MESSAGES_DIR = Path(reprisals.runtime.__file__).parent / "messages"


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=LONDON)


def assert_no_canary(text: str, where: str) -> None:
    for canary in CANARIES:
        assert canary.lower() not in text.lower(), (canary, where)


# -- every template, from real cases -------------------------------------------------------------------


def test_every_template_renders_and_nothing_identifying_appears_when_real_cases_queue_every_message(
        database: Database, caplog: pytest.LogCaptureFixture) -> None:
    wf, timers, messenger = build_engine(cipher=cipher()), Timers(), Messenger(BASE_URL)
    handler = make_timer_handler(messenger)
    with database.session() as s:
        establishment = make_establishment(s, name=ESTABLISHMENT)
        lead = make_user(s, role=Role.LEAD, body="IMB", name="Lead One")
        make_user(s, role=Role.LEAD, body="IMB", name="Lead Two")
        staff = make_user(s, role=Role.STAFF, body="IMB")
        # The worked example: referred Thu 17 Apr 2025, the response due Tue 6 May, a reminder on 30 Apr.
        referred = open_case(s, wf, cipher(), staff, local("2025-04-16 10:30"), case_data(establishment))
        advance_case(s, wf, lead, referred, "record_consent_and_risk", CONSENT, local("2025-04-16 11:00"))
        advance_case(s, wf, lead, referred, "refer", REFER, local("2025-04-17 14:00"))
        # A second case, left in triage (due Tue 22 Apr), assigned to the staff member by the lead.
        in_triage = open_case(s, wf, cipher(), lead, local("2025-04-16 10:30"), case_data(establishment))
        advance_case(s, wf, lead, in_triage, "record_consent_and_risk", CONSENT, local("2025-04-16 11:00"))
        assign_case(s, wf, lead, in_triage, staff, local("2025-04-16 11:30"), messenger=messenger)
        # A third, to which HMIP is party: its lead is told it opened and closed; a finding asks the other lead.
        make_user(s, role=Role.LEAD, body="HMIP", name="Party Lead")
        third = open_case(s, wf, cipher(), staff, local("2025-04-16 10:30"), case_data(establishment),
                          messenger=messenger)
        for trigger, fields in [("record_consent_and_risk", CONSENT), ("refer", REFER),
                                ("record_response", {"responder": "establishment", "summary": "Restored."}),
                                ("accept_response", {"proposed_finding": "substantiated", "assessment": "Yes."}),
                                ("withdraw", {})]:
            advance_case(s, wf, lead, third, trigger, fields, local("2025-04-17 15:00"), messenger=messenger)
        # An auditor asks to see who the person of the third case is; a lead approves (reprisals.unmasking).
        from reprisals.unmasking import decide_unmask, request_unmask

        auditor = make_user(s, role=Role.AUDITOR, body="IMB", name="Audra Auditor")
        asked = request_unmask(s, wf, auditor, third, local("2025-04-18 10:00"), reason="Annual review",
                               messenger=messenger)
        decide_unmask(s, wf, lead, third, local("2025-04-18 11:00"), request_id=asked.id, approve=True,
                      reason="Agreed", messenger=messenger)
        s.commit()

        timers.sweep_due(s, local("2025-04-30 11:00"), handler)  # the reminder (2 hours late), triage overdue
        messenger.daily_digests(s, local("2025-05-06 08:00"))  # one due today, one overdue
        s.commit()
        timers.sweep_due(s, local("2025-05-07 09:00"), handler)  # the response overdue: the escalation prompt

        messages = list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        assert {m.template for m in messages} == set(TEMPLATE_NAMES) - ACCOUNT_TEMPLATES  # every case message
        templates = message_templates()
        for m in messages:
            rendered = templates.render(m.template, m.context)
            where = f"{m.template} {m.idempotency_key}"
            for part in (rendered.subject, rendered.text, rendered.html):
                assert_no_canary(part, where)
            assert f"{BASE_URL}/cases" in rendered.text and f'href="{BASE_URL}/cases' in rendered.html, where
            assert_no_canary(json.dumps([m.idempotency_key, m.channel, m.recipient, m.template, m.context]), where)
            references = [m.context["reference"]] if "reference" in m.context else [
                i["reference"] for i in m.context["overdue"] + m.context["due"]]
            for reference in references:  # the message says which case, in words and as a link
                assert reference in rendered.text and f"{BASE_URL}/cases/{reference}" in rendered.html, where
            if m.template != "daily_digest":
                assert m.context["reference"] in rendered.subject, where
        reminder = next(m for m in messages if m.template == "reminder")
        assert "This reminder is 2 hours late" in templates.render("reminder", reminder.context).text

        log = LogChannel()
        with caplog.at_level(logging.INFO, logger="notifications"):
            result = deliver_due(s, local("2025-05-08 12:00"), {"inapp": InAppChannel(), "log": log}, templates)
        assert (result.sent, result.retried, result.failed) == (len(messages), 0, 0)
        items = list(s.scalars(select(InboxItem)))
        assert len(items) == sum(m.channel == "inapp" for m in messages)
        for item in items:
            assert_no_canary(" ".join([item.message_key, item.recipient, item.subject, item.body, item.link or ""]),
                             f"inbox item {item.id}")
        for to, rendered in log.sent:
            assert_no_canary(" ".join([to, rendered.subject, rendered.text, rendered.html]), "e-mail")
        assert_no_canary(caplog.text, "log")


# -- missing variables ---------------------------------------------------------------------------------


def test_template_problem_names_the_variable_when_a_template_uses_one_the_context_lacks() -> None:
    templates = Templates(jinja2.DictLoader({
        "note.subject.txt": "Case {{ reference }}",
        "note.txt": "Case {{ reference }} is due {{ due_text }}",
        "note.html": "<p>{{ reference }}</p>",
    }), ["note"])

    with pytest.raises(TemplateProblem) as err:
        templates.render("note", {"reference": "RPR-2025-0001"})

    assert err.value.template == "note"
    assert str(err.value) == "message template 'note': a variable is missing: 'due_text' is undefined"
    assert templates.check({"note": {"reference": "RPR-2025-0001"}}) == [str(err.value)]
    assert templates.check({}) == ["message template 'note': no sample context to check it with"]
    # The product's own templates: each needs its link.
    for name in TEMPLATE_NAMES:
        context = {k: v for k, v in SAMPLES[name].items() if k != "url"}
        with pytest.raises(TemplateProblem, match=f"message template '{name}': a variable is missing: 'url'"):
            message_templates().render(name, context)
    assert message_templates().check(SAMPLES) == []


def test_start_up_is_refused_naming_the_template_when_one_cannot_render_its_sample(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "messages"
    shutil.copytree(MESSAGES_DIR, copy)
    monkeypatch.setattr(reprisals.runtime, "message_templates",
                        lambda: Templates(jinja2.FileSystemLoader(copy), TEMPLATE_NAMES))
    settings = load_settings({
        "REPRISALS_INSTANCE_PATH": str(tmp_path), "REPRISALS_DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
        "REPRISALS_SECRET_KEY": "s" * 40, "REPRISALS_ENCRYPTION_KEYS": TEST_KEY}, dotenv=None)
    Runtime.from_settings(settings).close()  # the faithful copy starts

    (copy / "reminder.subject.txt").write_text("Case {{ reference }}: {{ detainee_name }}\n", encoding="utf-8")
    (copy / "overdue.html").write_text("<p>{{ reference </p>\n", encoding="utf-8")
    with pytest.raises(ConfigurationError) as err:
        Runtime.from_settings(settings)

    assert len(err.value.problems) == 2, err.value.problems
    reminder, overdue = sorted(err.value.problems, key=lambda p: "overdue" in p)
    assert reminder == "message template 'reminder': a variable is missing: 'detainee_name' is undefined"
    assert overdue.startswith("message template 'overdue': ")


# -- an unknown template at delivery ---------------------------------------------------------------------


def test_message_ends_failed_with_a_clear_error_and_the_others_go_when_its_template_is_unknown(
        database: Database) -> None:
    now = local("2025-04-30 10:00")
    with database.session() as s:
        user = make_user(s)
        Messenger(BASE_URL).send(s, user, "reminder", SAMPLES["reminder"], "before", now)
        enqueue(s, "stray", "inapp", str(user.id), "no_such_template", SAMPLES["reminder"], now)
        Messenger(BASE_URL).send(s, user, "overdue", SAMPLES["overdue"], "after", now)
        s.commit()
        log = LogChannel()

        result = deliver_due(s, now, {"inapp": InAppChannel(), "log": log}, message_templates())

        assert (result.sent, result.retried, result.failed) == (4, 0, 1)
        s.expire_all()
        statuses = {m.idempotency_key: (m.status, m.attempts, m.last_error)
                    for m in s.scalars(select(OutboxMessage))}
        assert statuses.pop("stray") == (FAILED, 1, "message template 'no_such_template': unknown template "
                                                    "(known: reminder, overdue, escalation_prompt, case_assigned,"
                                                    " daily_digest, party_case_opened, party_case_closed,"
                                                    " finding_to_confirm, sign_in_attack, invitation,"
                                                    " account_to_confirm, unmask_requested, unmask_decided)")
        assert set(statuses.values()) == {(SENT, 1, None)}
        assert len(log.sent) == 2
        assert len(list(s.scalars(select(InboxItem)))) == 2
