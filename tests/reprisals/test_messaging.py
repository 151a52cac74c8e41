"""Who hears about what, and when, on a real database with the real services: every message to the
in-app inbox, e-mail only for users who want it, non-urgent e-mail held until 09:00 on the next
English working day, the assignee told of an assignment, the daily digest on working days only; and
the e-mail configuration refused at start-up when it cannot work."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Session

from notifications.channels import InAppChannel, LogChannel
from notifications.models import OutboxMessage
from notifications.outbox import deliver_due, unread_count
from reprisals.config import load_settings
from reprisals.errors import ConfigurationError, InvalidInput
from reprisals.messaging import SAMPLES, Messenger, Outgoing, message_templates
from reprisals.models import Case, User
from reprisals.services import advance_case, assign_case, open_case
from tests.conftest import Database
from tests.factories import CONSENT, REFER, TEST_KEY, case_data, cipher, make_user, walk_to
from tests.reprisals.conftest import Cast
from tests.web.conftest import SECRET_KEY, Cli, assert_refused, base_env
from workflow.engine import Engine
from workflow.errors import MissingFields

LONDON = ZoneInfo("Europe/London")
BASE_URL = "https://reprisals.example.test"
MESSENGER = Messenger(BASE_URL)  # e-mail by the log channel (the default)


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=LONDON)


def rows(s: Session, **where: object) -> list[OutboxMessage]:
    s.expire_all()
    stmt = select(OutboxMessage).filter_by(**where).order_by(OutboxMessage.id)
    return list(s.scalars(stmt))


def shape(messages: list[OutboxMessage]) -> set[tuple[str, str, str]]:
    """(template, channel, recipient) of each message."""
    return {(m.template, m.channel, m.recipient) for m in messages}


# -- in-app and e-mail ---------------------------------------------------------------------------------


def test_inapp_always_receives_and_email_only_goes_when_the_user_wants_email(database: Database) -> None:
    now = local("2025-04-30 10:00")  # a Wednesday, in working hours
    with database.session() as s:
        wants = make_user(s)
        declines = make_user(s)
        declines.email_notifications = False

        MESSENGER.send(s, wants, "reminder", SAMPLES["reminder"], "k1", now)
        MESSENGER.send(s, declines, "reminder", SAMPLES["reminder"], "k2", now)
        s.commit()

        assert shape(rows(s)) == {("reminder", "inapp", str(wants.id)), ("reminder", "log", wants.email),
                                  ("reminder", "inapp", str(declines.id))}
        assert {m.next_attempt_at for m in rows(s)} == {now}  # in working hours: nothing is held


@pytest.mark.parametrize(("at", "held_until"), [
    ("2025-05-09 18:00", "2025-05-12 09:00"),  # Friday evening: Monday morning
    ("2025-05-02 18:00", "2025-05-06 09:00"),  # before the early May bank holiday (Mon 5 May): Tuesday
    ("2025-05-05 11:00", "2025-05-06 09:00"),  # on the bank holiday itself
    ("2025-05-10 11:00", "2025-05-12 09:00"),  # a Saturday
    ("2025-04-30 07:30", "2025-04-30 09:00"),  # early on a working day: that morning
    ("2025-04-30 17:00", "2025-05-01 09:00"),  # 17:00 is the end of working hours
    ("2025-11-28 18:00", "2025-12-01 09:00"),  # Friday evening in winter (GMT)
    ("2025-12-24 17:30", "2025-12-29 09:00"),  # Christmas Eve evening: Christmas, Boxing Day, a weekend
])
def test_non_urgent_email_is_held_until_the_next_working_morning_when_sent_out_of_hours(at: str,
                                                                                        held_until: str) -> None:
    assert MESSENGER.working_hours_from(local(at)) == local(held_until)


@pytest.mark.parametrize("at", ["2025-04-30 09:00", "2025-04-30 16:59"])
def test_email_is_not_held_when_sent_in_working_hours(at: str) -> None:
    assert MESSENGER.working_hours_from(local(at)) == local(at)


def test_email_waits_for_monday_0900_and_urgent_email_goes_at_once_when_sent_on_friday_evening(
        database: Database) -> None:
    friday = local("2025-05-09 18:00")
    monday = local("2025-05-12 09:00")
    with database.session() as s:
        user = make_user(s)
        MESSENGER.send(s, user, "reminder", SAMPLES["reminder"], "routine", friday)
        MESSENGER.send(s, user, "overdue", SAMPLES["overdue"], "urgent", friday, urgent=True)
        s.commit()
        assert {(m.template, m.channel, m.next_attempt_at) for m in rows(s)} == {
            ("reminder", "inapp", friday), ("reminder", "log", monday),  # 09:00 UK time, 08:00 UTC
            ("overdue", "inapp", friday), ("overdue", "log", friday),
        }
        log = LogChannel()
        channels = {"inapp": InAppChannel(), "log": log}

        deliver_due(s, friday, channels, message_templates())
        assert unread_count(s, str(user.id)) == 2  # the inbox gets both at once
        assert [to for to, _ in log.sent] == [user.email]  # only the urgent e-mail
        assert log.sent[0][1].subject.startswith("OVERDUE")

        deliver_due(s, monday - timedelta(seconds=1), channels, message_templates())
        assert len(log.sent) == 1
        deliver_due(s, monday, channels, message_templates())
        assert len(log.sent) == 2 and log.sent[1][1].subject.startswith("Case RPR-2026-0042")
        assert {m.status for m in rows(s)} == {"sent"}


@pytest.mark.parametrize("at", ["2025-05-09 18:00", "2025-04-30 10:00"])  # out of hours (held), in hours
def test_send_all_adds_the_same_rows_as_send_and_nothing_twice_when_given_the_same_messages(
        database: Database, at: str) -> None:
    now = local(at)
    with database.session() as s:
        wants, declines = make_user(s), make_user(s)
        declines.email_notifications = False
        messages = [Outgoing(wants, "reminder", SAMPLES["reminder"], "r"),
                    Outgoing(declines, "reminder", SAMPLES["reminder"], "d"),
                    Outgoing(wants, "overdue", SAMPLES["overdue"], "u", urgent=True)]
        for m in messages:
            MESSENGER.send(s, m.user, m.template, m.context, f"one:{m.key}", now, urgent=m.urgent)
        MESSENGER.send_all(s, messages, now)
        MESSENGER.send_all(s, messages, now)  # the same keys again: nothing added
        MESSENGER.send_all(s, [Outgoing(m.user, m.template, m.context, f"all:{m.key}", m.urgent) for m in messages],
                           now)
        s.commit()

        def fields(prefix: str) -> list[tuple[object, ...]]:
            return [(m.idempotency_key.removeprefix(prefix), m.channel, m.recipient, m.template, m.context, m.urgent,
                     m.status, m.attempts, m.created_at, m.next_attempt_at, m.claimed_until, m.sent_at, m.last_error)
                    for m in rows(s) if m.idempotency_key.startswith(prefix)]

        assert len(fields("one:")) == 5
        assert sorted(fields("all:"), key=str) == sorted(fields("one:"), key=str)  # as ``send`` (and ``enqueue``)
        assert len(fields("")) == 15  # 5 with each prefix, and the unprefixed keys' 5 once


# -- case assigned -------------------------------------------------------------------------------------


def test_the_assignee_is_told_in_app_and_by_email_when_a_lead_assigns_a_case(
        database: Database, wf: Engine, cast: Cast) -> None:
    now = local("2025-04-16 10:45")
    with database.session() as s:
        case = open_case(s, wf, cipher(), cast.lead, local("2025-04-16 10:30"), case_data(cast.establishment))
        assert case.assigned_user_id is None  # a lead opening a case is not assigned to it

        assign_case(s, wf, cast.lead, case, cast.staff, now, messenger=MESSENGER)
        assign_case(s, wf, cast.lead, case, cast.staff, now + timedelta(minutes=1), messenger=MESSENGER)  # no change
        s.commit()

        messages = rows(s)
        assert shape(messages) == {("case_assigned", "inapp", str(cast.staff.id)),
                                   ("case_assigned", "log", cast.staff.email)}
        assert len(messages) == 2  # assigning the same person again tells nobody
        for m in messages:
            assert m.context == {"reference": case.reference, "url": f"{BASE_URL}/cases/{case.reference}",
                                 "assigned_by": "Lead One"}
            assert (m.urgent, m.next_attempt_at) == (False, now)  # in working hours: sent at once

        assign_case(s, wf, cast.lead, case, cast.other_staff, now + timedelta(hours=1), messenger=MESSENGER)
        assign_case(s, wf, cast.lead, case, None, now + timedelta(hours=2), messenger=MESSENGER)  # unassigned
        s.commit()
        assert shape(rows(s)) - shape(messages) == {("case_assigned", "inapp", str(cast.other_staff.id)),
                                                    ("case_assigned", "log", cast.other_staff.email)}


def test_the_assignee_is_told_when_a_case_is_opened_assigned_to_them_and_nobody_when_staff_report_their_own(
        database: Database, wf: Engine, cast: Cast) -> None:
    now = local("2025-04-16 10:30")
    with database.session() as s:
        assigned = open_case(s, wf, cipher(), cast.lead, now,
                             {**case_data(cast.establishment), "assigned_user_id": cast.staff.id}, messenger=MESSENGER)
        open_case(s, wf, cipher(), cast.staff, now, case_data(cast.establishment), messenger=MESSENGER)  # their own
        s.commit()

        messages = rows(s, template="case_assigned")
        assert shape(messages) == {("case_assigned", "inapp", str(cast.staff.id)),
                                   ("case_assigned", "log", cast.staff.email)}
        for m in messages:
            assert m.context == {"reference": assigned.reference, "url": f"{BASE_URL}/cases/{assigned.reference}",
                                 "assigned_by": "Lead One"}


# -- the hand-offs: party bodies, the second lead -------------------------------------------------------


def test_a_party_bodys_leads_are_told_when_the_case_opens_and_when_it_closes_with_the_outcome(
        database: Database, wf: Engine, cast: Cast) -> None:
    now = local("2025-04-16 10:30")
    with database.session() as s:
        case = open_case(s, wf, cipher(), cast.staff, now, case_data(cast.establishment), messenger=MESSENGER)
        alone = open_case(s, wf, cipher(), cast.staff, now, case_data(cast.establishment, party_bodies=[]),
                          messenger=MESSENGER)
        s.commit()
        opened = rows(s, template="party_case_opened")
        # HMIP is party to the first case: its lead (only) is told, in-app and by e-mail; nobody of the second.
        assert shape(opened) == {("party_case_opened", "inapp", str(cast.party_lead.id)),
                                 ("party_case_opened", "log", cast.party_lead.email)}
        assert opened[0].context["reference"] == case.reference and alone.reference not in str(
            [m.context for m in rows(s)])
        assert opened[0].context["party_body"] == "HM Inspectorate of Prisons"
        # Closing, from any stage, tells them again with the outcome; a refused action tells nobody.
        with pytest.raises(MissingFields):
            advance_case(s, wf, cast.staff, case, "withdraw", {"reason": 5}, now, messenger=MESSENGER)
        s.rollback()
        assert rows(s, template="party_case_closed") == []
        advance_case(s, wf, cast.staff, case, "withdraw", {}, local("2025-04-17 09:00"), messenger=MESSENGER)
        s.commit()
        closed = rows(s, template="party_case_closed")
        assert shape(closed) == {("party_case_closed", "inapp", str(cast.party_lead.id)),
                                 ("party_case_closed", "log", cast.party_lead.email)}
        text = message_templates().render("party_case_closed", closed[0].context).text
        assert "Outcome: Withdrawn." in text and "Thu 17 Apr 2025, 09:00" in text and case.reference in text


def test_the_other_leads_are_asked_to_confirm_a_finding_that_needs_a_second_lead(
        database: Database, wf: Engine, cast: Cast) -> None:
    now = local("2025-04-16 10:30")
    with database.session() as s:
        case = open_case(s, wf, cipher(), cast.staff, now, case_data(cast.establishment, party_bodies=[]))
        walk_to(s, wf, case, "assessment", lead=cast.lead, second_lead=cast.second_lead, now=now)
        other = open_case(s, wf, cipher(), cast.staff, now, case_data(cast.establishment, party_bodies=[]))
        walk_to(s, wf, other, "assessment", lead=cast.lead, second_lead=cast.second_lead, now=now)
        s.commit()
        advance_case(s, wf, cast.lead, case, "accept_response",
                     {"proposed_finding": "substantiated", "assessment": "It followed."}, now, messenger=MESSENGER)
        # "Not substantiated" the proposer may close alone: nobody is asked.
        advance_case(s, wf, cast.lead, other, "accept_response",
                     {"proposed_finding": "not_substantiated", "assessment": "It did not."}, now, messenger=MESSENGER)
        s.commit()
        asked = rows(s, template="finding_to_confirm")
        assert shape(asked) == {("finding_to_confirm", "inapp", str(cast.second_lead.id)),
                                ("finding_to_confirm", "log", cast.second_lead.email)}
        assert asked[0].context == {"reference": case.reference, "url": f"{BASE_URL}/cases/{case.reference}",
                                    "proposed_by": "Lead One", "finding": "Substantiated"}


def test_nothing_is_sent_when_opening_an_assigned_case_is_refused(database: Database, wf: Engine, cast: Cast) -> None:
    with database.session() as s:
        with pytest.raises(InvalidInput):
            open_case(s, wf, cipher(), cast.lead, local("2025-04-16 10:30"),
                      {**case_data(cast.establishment), "assigned_user_id": cast.staff.id, "risk": "dire"},
                      messenger=MESSENGER)
        s.rollback()
        assert rows(s) == []


# -- the daily digest ----------------------------------------------------------------------------------


def digest_world(s: Session, wf: Engine, cast: Cast) -> tuple[Case, Case]:
    """Case ``due``: referred Thu 17 Apr 2025, the establishment's response due Tue 6 May 17:00, assigned
    to ``staff``. Case ``late``: in triage, due Tue 22 Apr, assigned to ``other_staff``."""
    due = open_case(s, wf, cipher(), cast.staff, local("2025-04-16 10:30"), case_data(cast.establishment))
    advance_case(s, wf, cast.lead, due, "record_consent_and_risk", CONSENT, local("2025-04-16 11:00"))
    advance_case(s, wf, cast.lead, due, "refer", REFER, local("2025-04-17 14:00"))
    late = open_case(s, wf, cipher(), cast.other_staff, local("2025-04-16 10:30"), case_data(cast.establishment))
    advance_case(s, wf, cast.lead, late, "record_consent_and_risk", CONSENT, local("2025-04-16 11:00"))
    s.commit()
    return due, late


def test_each_user_gets_one_digest_of_due_today_and_overdue_when_run_twice_on_a_working_day(
        database: Database, wf: Engine, cast: Cast) -> None:
    morning = local("2025-05-06 08:00")  # Tue 6 May 2025, the day the establishment's response is due
    with database.session() as s:
        due, late = digest_world(s, wf, cast)

        queued = MESSENGER.daily_digests(s, morning)
        s.commit()

        assert queued == 4
        digests = rows(s, channel="inapp")
        seen = {m.recipient: ([i["reference"] for i in m.context["overdue"]],
                              [i["reference"] for i in m.context["due"]]) for m in digests}
        assert seen == {
            str(cast.staff.id): ([], [due.reference]),
            str(cast.other_staff.id): ([late.reference], []),
            str(cast.lead.id): ([late.reference], [due.reference]),  # the owning body's leads see both
            str(cast.second_lead.id): ([late.reference], [due.reference]),
        }  # the party body's lead (HMIP) gets none
        lead_digest = next(m for m in digests if m.recipient == str(cast.lead.id))
        assert lead_digest.context == {
            "date_text": "Tue 6 May 2025", "overdue_count": 1, "due_count": 1, "url": f"{BASE_URL}/cases",
            "overdue": [{"reference": late.reference, "deadline": "Triage decision",
                         "due_text": "Tue 22 Apr 2025, 17:00", "url": f"{BASE_URL}/cases/{late.reference}"}],
            "due": [{"reference": due.reference, "deadline": "Establishment response",
                     "due_text": "Tue 6 May 2025, 17:00", "url": f"{BASE_URL}/cases/{due.reference}"}],
        }
        emails = rows(s, channel="log")
        assert {m.recipient for m in emails} == {cast.staff.email, cast.other_staff.email, cast.lead.email,
                                                 cast.second_lead.email}
        assert {m.next_attempt_at for m in emails} == {local("2025-05-06 09:00")}  # 08:00 is before working hours
        assert {m.next_attempt_at for m in digests} == {morning}

        count = len(rows(s))
        MESSENGER.daily_digests(s, morning)
        MESSENGER.daily_digests(s, morning + timedelta(hours=3))  # the same day, later
        s.commit()
        assert len(rows(s)) == count  # nothing new


@pytest.mark.parametrize("morning", ["2025-05-10 08:00", "2025-05-05 08:00"], ids=["saturday", "bank-holiday"])
def test_no_digest_is_queued_when_the_day_is_not_a_working_day(
        database: Database, wf: Engine, cast: Cast, morning: str) -> None:
    with database.session() as s:
        digest_world(s, wf, cast)

        assert MESSENGER.daily_digests(s, local(morning)) == 0
        assert rows(s) == []


# -- configuration ---------------------------------------------------------------------------------------


def settings_env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {"REPRISALS_INSTANCE_PATH": str(tmp_path), "REPRISALS_DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
           "REPRISALS_SECRET_KEY": SECRET_KEY, "REPRISALS_ENCRYPTION_KEYS": TEST_KEY}
    return env | {f"REPRISALS_{k}": v for k, v in values.items()}


def problems_of(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigurationError) as err:
        load_settings(env, dotenv=None)
    return err.value.problems


def test_start_up_is_refused_naming_the_variable_when_the_email_channel_is_unknown(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = settings_env(tmp_path, EMAIL_CHANNEL="carrier-pigeon")

    assert problems_of(env) == [
        "REPRISALS_EMAIL_CHANNEL: unknown channel 'carrier-pigeon' (known: log, smtp, notify)"]
    monkeypatch.chdir(tmp_path)  # no stray .env
    result = Cli(env)("outbox", "list")
    assert_refused(result, "configuration: REPRISALS_EMAIL_CHANNEL: unknown channel 'carrier-pigeon'", code=2)
    with pytest.raises(ValueError, match="unknown e-mail channel 'carrier-pigeon'"):
        Messenger(BASE_URL, "carrier-pigeon")


@pytest.mark.parametrize(("values", "expected"), [
    ({"EMAIL_CHANNEL": "notify"}, [
        "REPRISALS_NOTIFY_API_KEY: required when REPRISALS_EMAIL_CHANNEL is notify",
        "REPRISALS_NOTIFY_TEMPLATE_IDS: no Notify template id for reminder, overdue, escalation_prompt, "
        "case_assigned, daily_digest, party_case_opened, party_case_closed, finding_to_confirm, sign_in_attack, "
        "invitation"]),
    ({"EMAIL_CHANNEL": "notify", "NOTIFY_API_KEY": "key", "NOTIFY_TEMPLATE_IDS": "reminder=t1, overdue=t2"}, [
        "REPRISALS_NOTIFY_TEMPLATE_IDS: no Notify template id for escalation_prompt, case_assigned, "
        "daily_digest, party_case_opened, party_case_closed, finding_to_confirm, sign_in_attack, invitation"]),
    ({"NOTIFY_TEMPLATE_IDS": "reminder"}, [
        "REPRISALS_NOTIFY_TEMPLATE_IDS: 'reminder' is not NAME=TEMPLATE_ID with NAME one of reminder, overdue, "
        "escalation_prompt, case_assigned, daily_digest, party_case_opened, party_case_closed, "
        "finding_to_confirm, sign_in_attack, invitation"]),
    ({"EMAIL_CHANNEL": "smtp"}, ["REPRISALS_SMTP_URL: required when REPRISALS_EMAIL_CHANNEL is smtp"]),
], ids=["notify-bare", "notify-some-ids", "ids-malformed", "smtp-without-url"])
def test_each_missing_email_setting_is_named_when_the_channel_cannot_work(
        tmp_path: Path, values: dict[str, str], expected: list[str]) -> None:
    assert problems_of(settings_env(tmp_path, **values)) == expected


def test_notify_settings_are_kept_when_they_are_complete(tmp_path: Path) -> None:
    ids = ("reminder=t1,overdue=t2,escalation_prompt=t3,case_assigned=t4,daily_digest=t5,party_case_opened=t6,"
           "party_case_closed=t7,finding_to_confirm=t8,sign_in_attack=t9,invitation=t10")

    settings = load_settings(settings_env(tmp_path, EMAIL_CHANNEL="notify", NOTIFY_API_KEY="key",
                                          NOTIFY_TEMPLATE_IDS=ids), dotenv=None)

    assert (settings.email_channel, settings.notify_api_key) == ("notify", "key")
    assert settings.notify_template_ids == {"reminder": "t1", "overdue": "t2", "escalation_prompt": "t3",
                                            "case_assigned": "t4", "daily_digest": "t5", "party_case_opened": "t6",
                                            "party_case_closed": "t7", "finding_to_confirm": "t8",
                                            "sign_in_attack": "t9", "invitation": "t10"}


def test_users_add_refuses_with_a_clear_error_and_writes_nothing_when_the_email_is_invalid(
        database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = Cli(base_env(database.url, tmp_path))

    for address in ("no-at-sign.example.test", "two@@example.test", "someone@exa mple.test"):
        result = run("users", "add", "--email", address, "--name", "Someone", "--role", "admin",
                     "--password-stdin", input="correct horse battery staple\n")
        (line,) = assert_refused(result)  # one line, no traceback
        assert line.startswith("error: email: is not an e-mail address: "), line

    with database.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(User.__table__)).scalar_one() == 0
