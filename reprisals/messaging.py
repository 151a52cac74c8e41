"""Who hears about what, and how: every message goes to the user's in-app inbox, and by e-mail (SMTP
or GOV.UK Notify, per configuration) unless they turned e-mail off. Non-urgent e-mail waits for
working hours. Messages carry the case reference, the deadline and a link — never identity, the
description, or anything the establishment holds about the person.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

import jinja2
from sqlalchemy import select
from sqlalchemy.orm import Session

from notifications.models import PENDING
from notifications.outbox import enqueue, enqueue_many
from notifications.templates import Templates
from reprisals.models import Body, Case, Role, User
from workflow.calendars import LONDON, WorkingCalendar, calendar_for
from workflow.clock import ensure_utc
from workflow.models import LIVE, OVERDUE, DeadlineRow

TEMPLATE_NAMES = ("reminder", "overdue", "escalation_prompt", "case_assigned", "daily_digest", "party_case_opened",
                  "party_case_closed", "finding_to_confirm", "sign_in_attack", "invitation", "account_to_confirm",
                  "unmask_requested", "unmask_decided")
# Messages whose text holds a secret (a link that signs someone up): e-mail only, never the in-app inbox or
# the application log; with the ``log`` channel their text goes to the operator's console (development).
SECRET_TEMPLATES = frozenset({"invitation"})
# Messages about the recipient's account, not a case: they carry no case reference.
ACCOUNT_TEMPLATES = frozenset({"sign_in_attack", "invitation", "account_to_confirm"})
INAPP = "inapp"
EMAIL_CHANNELS = ("log", "smtp", "notify")
WORKING_HOURS = (time(9, 0), time(17, 0))


def message_templates() -> Templates:
    return Templates(jinja2.PackageLoader("reprisals", "messages"), TEMPLATE_NAMES)


_DEADLINE_SAMPLE = {"reference": "RPR-2026-0042", "deadline": "Establishment response", "stage": "referred",
                    "due_at": "2026-05-06T16:00:00+00:00", "due_text": "Tue 6 May 2026, 17:00",
                    "url": "https://reprisals.example/cases/RPR-2026-0042", "late_by_seconds": 0, "late_text": None}
_ITEM = {"reference": "RPR-2026-0042", "deadline": "Establishment response", "due_text": "Tue 6 May 2026, 17:00",
         "url": "https://reprisals.example/cases/RPR-2026-0042"}
SAMPLES: dict[str, dict[str, Any]] = {
    "reminder": _DEADLINE_SAMPLE,
    "overdue": _DEADLINE_SAMPLE,
    "escalation_prompt": _DEADLINE_SAMPLE,
    "case_assigned": {"reference": "RPR-2026-0042", "url": "https://reprisals.example/cases/RPR-2026-0042",
                      "assigned_by": "Alex Morgan"},
    "daily_digest": {"date_text": "Tue 6 May 2026", "overdue": [_ITEM], "due": [_ITEM], "overdue_count": 1,
                     "due_count": 1, "url": "https://reprisals.example/cases"},
    "party_case_opened": {"reference": "RPR-2026-0042", "url": "https://reprisals.example/cases/RPR-2026-0042",
                          "owning_body": "Independent Monitoring Boards", "party_body": "HM Inspectorate of Prisons"},
    "party_case_closed": {"reference": "RPR-2026-0042", "url": "https://reprisals.example/cases/RPR-2026-0042",
                          "party_body": "HM Inspectorate of Prisons", "outcome": "Substantiated",
                          "closed_text": "Thu 22 May 2026, 11:00"},
    "finding_to_confirm": {"reference": "RPR-2026-0042", "url": "https://reprisals.example/cases/RPR-2026-0042",
                           "proposed_by": "Alex Morgan", "finding": "Substantiated"},
    "sign_in_attack": {"attempts": 50, "date_text": "Tue 6 May 2026, 17:00", "url": "https://reprisals.example/account"},
    "invitation": {"name": "Nia Newcomer", "invited_by": "Alex Morgan", "role": "staff",
                   "body": "Independent Monitoring Boards", "needs_confirmation": True,
                   "expires_text": "Tue 13 May 2026, 09:30", "url": "https://reprisals.example/invitation/abc"},
    "account_to_confirm": {"name": "Nia Newcomer", "email": "nia@imb.example", "role": "staff",
                           "body": "Independent Monitoring Boards", "url": "https://reprisals.example/accounts/pending"},
    "unmask_requested": {"reference": "RPR-2026-0042", "requested_by": "Dana Whitfield",
                         "url": "https://reprisals.example/cases/RPR-2026-0042#unmask"},
    "unmask_decided": {"reference": "RPR-2026-0042", "decided_by": "Alex Morgan", "approved": True,
                       "until_text": "Wed 7 May 2026, 17:00", "url": "https://reprisals.example/cases/RPR-2026-0042#unmask"},
}


class InvitationsUnavailable(Exception):
    """Invitations cannot be sent: in production they need a real e-mail channel (never the log)."""


def outcome_words(value: str) -> str:
    """'partly_substantiated' → 'Partly substantiated' (outcomes and findings, for messages)."""
    return value.replace("_", " ").capitalize()


def leads_of(session: Session, body_code: str) -> list[User]:
    """The active protocol leads of a body whose accounts are confirmed (a pending lead hears nothing of cases)."""
    return list(session.scalars(select(User).where(User.role == Role.LEAD, User.body_code == body_code,
                                                   User.active.is_(True), User.confirmed_at.is_not(None))
                                .order_by(User.id)))


def leads_of_bodies(session: Session, body_codes: Iterable[str]) -> dict[str, list[User]]:
    """The active, confirmed protocol leads of each of these bodies (in one statement), each list as ``leads_of``."""
    out: dict[str, list[User]] = {code: [] for code in body_codes}
    if out:
        for user in session.scalars(select(User).where(User.role == Role.LEAD, User.body_code.in_(out),
                                                       User.active.is_(True), User.confirmed_at.is_not(None))
                                    .order_by(User.id)):
            out[str(user.body_code)].append(user)  # one of the codes asked for, so never None
    return out


def case_url(base_url: str, reference: str) -> str:
    return f"{base_url.rstrip('/')}/cases/{reference}"


@dataclass(frozen=True)
class Outgoing:
    """One message for ``Messenger.send_all``: what ``send`` takes, but the time."""

    user: User
    template: str
    context: dict[str, Any]
    key: str
    urgent: bool = False


@dataclass
class Messenger:
    """Queues messages for users (in the caller's transaction)."""

    base_url: str
    email_channel: str = "log"
    calendar: WorkingCalendar | None = None
    production: bool = False  # refuses to send secrets (invitation links) through the ``log`` channel

    def __post_init__(self) -> None:
        if self.email_channel not in EMAIL_CHANNELS:
            raise ValueError(f"unknown e-mail channel '{self.email_channel}' (known: {', '.join(EMAIL_CHANNELS)})")
        self.calendar = self.calendar or calendar_for("england")

    def working_hours_from(self, now: datetime) -> datetime:
        """``now`` if it is within working hours, else the start of the next working day."""
        cal = self.calendar
        assert cal is not None
        day = cal.local_date(now)
        start = datetime.combine(day, WORKING_HOURS[0], tzinfo=cal.tz)
        end = datetime.combine(day, WORKING_HOURS[1], tzinfo=cal.tz)
        if cal.is_working_day(day) and start <= now < end:
            return now
        if cal.is_working_day(day) and now < start:
            return ensure_utc(start)
        return cal.start_of(cal.next_working_day(day))

    def send(self, session: Session, user: User, template: str, context: dict[str, Any], key: str,
             now: datetime, *, urgent: bool = False) -> None:
        enqueue(session, f"{key}:{INAPP}", INAPP, str(user.id), template, context, now, urgent=urgent)
        if user.email_notifications and user.active:
            enqueue(session, f"{key}:email", self.email_channel, user.email, template, context, now, urgent=urgent,
                    not_before=None if urgent else self.working_hours_from(now))

    def send_all(self, session: Session, messages: Sequence[Outgoing], now: datetime) -> None:
        """``send`` for many messages in one statement: the same outbox rows ``send`` would add, each
        ``INSERT … ON CONFLICT DO NOTHING`` on its key."""
        if not messages:
            return
        email_at = None
        rows: list[dict[str, Any]] = []
        for m in messages:
            base = {"template": m.template, "context": m.context, "urgent": m.urgent, "status": PENDING,
                    "attempts": 0, "created_at": now}
            rows.append({**base, "idempotency_key": f"{m.key}:{INAPP}", "channel": INAPP,
                         "recipient": str(m.user.id), "next_attempt_at": now})
            if m.user.email_notifications and m.user.active:
                if not m.urgent and email_at is None:
                    email_at = max(now, self.working_hours_from(now))
                rows.append({**base, "idempotency_key": f"{m.key}:email", "channel": self.email_channel,
                             "recipient": m.user.email, "next_attempt_at": now if m.urgent else email_at})
        enqueue_many(session, rows)

    def check_invitations(self) -> None:
        """Raise ``InvitationsUnavailable`` if an invitation could not reach its invitee by e-mail alone."""
        if self.production and self.email_channel == "log":
            raise InvitationsUnavailable(
                "invitations cannot be sent: e-mail is not set up (REPRISALS_EMAIL_CHANNEL is log, which in "
                "production would put the link where only the operator sees it). Set up SMTP or GOV.UK Notify, "
                "or add the person on the server with `reprisals users add`")

    def invitation(self, session: Session, user: User, context: dict[str, Any], key: str, now: datetime) -> None:
        """The invitation's link to the invitee, by e-mail only and at once: never the in-app inbox (nobody
        could read it there but an admin-made account), whatever their e-mail preference."""
        self.check_invitations()
        enqueue(session, f"{key}:email", self.email_channel, user.email, "invitation", context, now, urgent=True)

    def account_to_confirm(self, session: Session, user: User, now: datetime) -> None:
        """Tell the confirmed leads of ``user``'s body, in the app, that an account waits for one of them."""
        assert user.body_code is not None
        body = session.get(Body, user.body_code)
        context = {"name": user.name, "email": user.email, "role": user.role.value,
                   "body": body.name if body else user.body_code,
                   "url": f"{self.base_url.rstrip('/')}/accounts/pending"}
        for lead in leads_of(session, user.body_code):
            if lead.id != user.id:
                key = f"to-confirm:{user.id}:{user.role.value}:{user.body_code}:{now.isoformat()}:{lead.id}:{INAPP}"
                enqueue(session, key, INAPP, str(lead.id), "account_to_confirm", context, now, urgent=True)

    def case_assigned(self, session: Session, case: Case, assignee: User, by: User, now: datetime) -> None:
        self.send(session, assignee, "case_assigned",
                  {"reference": case.reference, "url": case_url(self.base_url, case.reference),
                   "assigned_by": by.name},
                  f"assigned:{case.reference}:{assignee.id}:{now.isoformat()}", now)

    def _party_leads(self, session: Session, case: Case) -> list[tuple[User, str]]:
        codes = sorted(case.party_codes)
        names = {b.code: b.name for b in session.scalars(select(Body).where(Body.code.in_(codes)))} if codes else {}
        return [(u, names.get(code, code)) for code, users in leads_of_bodies(session, codes).items() for u in users]

    def party_case_opened(self, session: Session, case: Case, now: datetime) -> None:
        """A party body's leads are told a case opened (PROTOCOL: without identity; nor the establishment,
        which with the date could point at the person)."""
        owning = session.get(Body, case.owning_body_code)
        for user, body in self._party_leads(session, case):
            self.send(session, user, "party_case_opened",
                      {"reference": case.reference, "url": case_url(self.base_url, case.reference),
                       "owning_body": owning.name if owning else case.owning_body_code, "party_body": body},
                      f"party-opened:{case.reference}:{user.id}", now)

    def party_case_closed(self, session: Session, case: Case, now: datetime) -> None:
        """A party body's leads are told a case closed, with its outcome (each closing, if it is reopened)."""
        assert case.closed_at is not None and case.outcome is not None
        for user, body in self._party_leads(session, case):
            self.send(session, user, "party_case_closed",
                      {"reference": case.reference, "url": case_url(self.base_url, case.reference),
                       "party_body": body,
                       "outcome": outcome_words(case.outcome.value), "closed_text": local_text(case.closed_at)},
                      f"party-closed:{case.reference}:{case.instance.version}:{user.id}", now)

    def finding_to_confirm(self, session: Session, case: Case, proposer: User, finding: str, now: datetime) -> None:
        """The owning body's other leads are asked to confirm a finding that needs a second lead."""
        for user in leads_of(session, case.owning_body_code):
            if user.id == proposer.id:
                continue
            self.send(session, user, "finding_to_confirm",
                      {"reference": case.reference, "url": case_url(self.base_url, case.reference),
                       "proposed_by": proposer.name, "finding": outcome_words(finding)},
                      f"finding:{case.reference}:{case.instance.version}:{user.id}", now)

    def unmask_requested(self, session: Session, case: Case, requester: User, now: datetime) -> None:
        """The owning body's confirmed leads are told, in the app, that an auditor asks to see who the person of
        a case is: the reference, the requester's name and the link; never identity or the reason."""
        context = {"reference": case.reference, "requested_by": requester.name,
                   "url": case_url(self.base_url, case.reference) + "#unmask"}
        for user in leads_of(session, case.owning_body_code):
            if user.id == requester.id:
                continue
            key = f"unmask-requested:{case.reference}:{requester.id}:{now.isoformat()}:{user.id}:{INAPP}"
            enqueue(session, key, INAPP, str(user.id), "unmask_requested", context, now, urgent=True)

    def unmask_decided(self, session: Session, case: Case, requester: User, by: User, approved: bool,
                       until: datetime | None, now: datetime) -> None:
        """The requester is told, in the app, that a lead approved (until when) or refused their request."""
        context = {"reference": case.reference, "decided_by": by.name, "approved": approved,
                   "until_text": local_text(until) if until else "", "url": case_url(self.base_url, case.reference)
                   + "#unmask"}
        key = f"unmask-decided:{case.reference}:{requester.id}:{now.isoformat()}:{INAPP}"
        enqueue(session, key, INAPP, str(requester.id), "unmask_decided", context, now, urgent=True)

    def sign_in_attack(self, session: Session, user: User, attempts: int, now: datetime) -> None:
        """The owner of an account under attack is told: in the app, and by e-mail at once even if they
        turned e-mail off (it is about their account's safety, not a case). Once a UK day while it lasts
        (the key holds the day); no address, nothing about who tried."""
        cal = self.calendar
        assert cal is not None
        day = cal.local_date(now).isoformat()
        context = {"attempts": attempts, "date_text": local_text(now),
                   "url": f"{self.base_url.rstrip('/')}/account"}
        key = f"sign-in-attack:{user.id}:{day}"
        enqueue(session, f"{key}:{INAPP}", INAPP, str(user.id), "sign_in_attack", context, now, urgent=True)
        enqueue(session, f"{key}:email", self.email_channel, user.email, "sign_in_attack", context, now, urgent=True)

    def daily_digests(self, session: Session, now: datetime) -> int:
        """Queue today's digest for each user with something due today or overdue, on working days.
        Returns how many were queued (keyed by date and user, so running twice queues nothing)."""
        cal = self.calendar
        assert cal is not None
        today = cal.local_date(now)
        if not cal.is_working_day(today):
            return 0
        end_of_today = cal.end_of(today)
        rows = session.execute(
            select(Case, DeadlineRow).join(DeadlineRow, DeadlineRow.instance_id == Case.instance_id)
            .where(DeadlineRow.status.in_(LIVE), DeadlineRow.due_at <= end_of_today)
            .order_by(DeadlineRow.due_at)
        ).all()
        per_user: dict[int, tuple[User, list[dict[str, Any]], list[dict[str, Any]]]] = {}
        lead_cache: dict[str, list[User]] = {}
        for case, deadline in rows:
            item = {"reference": case.reference, "deadline": deadline.label, "due_text": local_text(deadline.due_at),
                    "url": case_url(self.base_url, case.reference)}
            people: list[User] = [case.assigned_user] if case.assigned_user else []
            if case.owning_body_code not in lead_cache:
                lead_cache[case.owning_body_code] = leads_of(session, case.owning_body_code)
            people += lead_cache[case.owning_body_code]
            for person in unique_users(people):
                if not person.active or person.pending:  # pending: nothing of cases (decision 22)
                    continue
                _, overdue, due = per_user.setdefault(person.id, (person, [], []))
                (overdue if deadline.status == OVERDUE or deadline.due_at <= now else due).append(item)
        for user, overdue, due in per_user.values():
            self.send(session, user, "daily_digest",
                      {"date_text": f"{today:%a} {today.day} {today:%b %Y}", "overdue": overdue, "due": due,
                       "overdue_count": len(overdue), "due_count": len(due),
                       "url": f"{self.base_url.rstrip('/')}/cases"},
                      f"digest:{today.isoformat()}:{user.id}", now)
        return len(per_user)


def local_text(at: datetime) -> str:
    """'Tue 6 May 2025, 17:00' in UK time."""
    local = at.astimezone(LONDON)
    return f"{local:%a} {local.day} {local:%b %Y}, {local:%H:%M}"


def unique_users(users: Iterable[User]) -> list[User]:
    seen: set[int] = set()
    out = []
    for u in users:
        if u.id not in seen:
            seen.add(u.id)
            out.append(u)
    return out
