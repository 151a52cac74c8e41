"""The domain's words for moments and time left, in one style for pages, e-mails and the command.

GOV.UK style: "5pm", "10:30am", "midday", "midnight"; "Friday 4 December 2026"; in tables and queues the
short form "5pm Fri 4 Dec". Always UK time. How much time is left, or how late something is, is said in
working days for a working-day deadline and in hours for a clock-hour one (urgent cases), so a lead reads
the same unit the protocol counts in.

No ``strftime``: its locale lookups cost tens of microseconds a call, and a long timeline formats hundreds
of moments.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from reprisals.models import AgeGroup, Channel, EstablishmentType, Nation, Risk, SanctionType
from workflow.calendars import WorkingCalendar
from workflow.spec import Deadline, Duration, Unit

LONDON = ZoneInfo("Europe/London")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


def clock_words(at: datetime) -> str:
    """'5pm', '10:30am', 'midday', 'midnight' (UK time)."""
    t = at.astimezone(LONDON)
    if t.minute == 0 and t.hour in (0, 12):
        return "midnight" if t.hour == 0 else "midday"
    hour = t.hour % 12 or 12
    minutes = f":{t.minute:02d}" if t.minute else ""
    return f"{hour}{minutes}{'am' if t.hour < 12 else 'pm'}"


def day_words(day: date, *, short: bool = False, year: bool = True) -> str:
    """'Friday 4 December 2026'; short: 'Fri 4 Dec' (no year)."""
    if short:
        return f"{DAYS[day.weekday()][:3]} {day.day} {MONTHS[day.month - 1][:3]}"
    text = f"{DAYS[day.weekday()]} {day.day} {MONTHS[day.month - 1]}"
    return f"{text} {day.year}" if year else text


def moment_words(at: datetime, *, short: bool = False) -> str:
    """'5pm on Friday 4 December 2026'; short: '5pm Fri 4 Dec'."""
    local = at.astimezone(LONDON)
    if short:
        return f"{clock_words(local)} {day_words(local.date(), short=True)}"
    return f"{clock_words(local)} on {day_words(local.date())}"


@dataclass(frozen=True)
class TimeLeft:
    words: str  # '3 working days left', 'due today', 'overdue by 5 hours'
    overdue: bool
    due_today: bool


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def time_left(due: datetime, at: datetime, *, in_hours: bool, calendar: WorkingCalendar | None = None) -> TimeLeft:
    """How long until ``due`` (or how late it is) at ``at``.

    ``in_hours``: a clock-hour deadline, said in hours (minutes in the last hour). Otherwise in working days
    of ``calendar`` (the case's nation): 'due today' on its last day, '1 working day left' the working day
    before; overdue by the working days since. Without a calendar, calendar days."""
    overdue = due <= at
    seconds = abs((due - at).total_seconds())
    if in_hours:
        hours = int(seconds // 3600)
        amount = _plural(hours, "hour") if hours else _plural(max(1, int(seconds // 60)), "minute")
        today = due.astimezone(LONDON).date() == at.astimezone(LONDON).date()
        return TimeLeft(f"overdue by {amount}" if overdue else f"{amount} left", overdue, today and not overdue)
    due_day, today_day = due.astimezone(LONDON).date(), at.astimezone(LONDON).date()
    if calendar is not None:
        days = calendar.working_days_between(at, due) if not overdue else calendar.working_days_between(due, at)
        unit = "working day"
    else:
        days = abs((due_day - today_day).days)
        unit = "day"
    if not overdue and due_day == today_day:
        return TimeLeft("due today", False, True)
    if overdue:
        if days <= 0:  # late on the day it was due
            hours = int(seconds // 3600)
            amount = _plural(hours, "hour") if hours else _plural(max(1, int(seconds // 60)), "minute")
            return TimeLeft(f"overdue by {amount}", True, False)
        return TimeLeft(f"overdue by {_plural(days, unit)}", True, False)
    return TimeLeft(f"{_plural(max(days, 1), unit)} left", False, False)


# -- labels for the enums ---------------------------------------------------------------------------

RISK_LABELS = {Risk.URGENT: "Urgent", Risk.HIGH: "High", Risk.STANDARD: "Standard"}
NATION_LABELS = {Nation.ENGLAND: "England", Nation.WALES: "Wales", Nation.SCOTLAND: "Scotland",
                 Nation.NORTHERN_IRELAND: "Northern Ireland"}
# part: deadlines. Whose working days a case's deadlines count, by its nation: bank holidays as GOV.UK
# lists them (England and Wales share theirs).
WORKING_DAY_REGIONS = {Nation.ENGLAND: "England and Wales", Nation.WALES: "England and Wales",
                       Nation.SCOTLAND: "Scotland", Nation.NORTHERN_IRELAND: "Northern Ireland"}
CHANNEL_LABELS = {
    Channel.INSPECTION_INTERVIEW: "Inspection interview", Channel.SURVEY: "Survey",
    Channel.IMB_APPLICATION: "IMB application", Channel.PPO_COMPLAINT: "PPO complaint",
    Channel.LO_VISIT: "Lay Observer visit", Channel.LETTER: "Letter", Channel.PHONE: "Phone",
    Channel.VIA_FAMILY_OR_SOLICITOR: "Through family or a solicitor",
}
AGE_LABELS = {AgeGroup.CHILD: "Under 18", AgeGroup.ADULT: "18 or over"}
SANCTION_LABELS = {
    SanctionType.TRANSFER: "Transfer", SanctionType.LOSS_OF_JOB_OR_ACTIVITY: "Loss of job or activity",
    SanctionType.RECATEGORISATION: "Recategorisation", SanctionType.RESTRICTED_VISITS: "Restricted visits",
    SanctionType.RESTRICTED_PHONE_OR_CORRESPONDENCE: "Restricted phone calls or correspondence",
    SanctionType.PHYSICAL_ABUSE: "Physical abuse", SanctionType.VERBAL_ABUSE_OR_THREATS: "Verbal abuse or threats",
    SanctionType.RESTRICTED_FOOD_OR_ENTITLEMENTS: "Restricted food or entitlements",
    SanctionType.SEGREGATION: "Segregation", SanctionType.WORSE_ACCOMMODATION: "Worse accommodation",
    SanctionType.WITHDRAWN_SUPPORT_FOR_RELEASE: "Support for release withdrawn",
    SanctionType.INCENTIVE_DOWNGRADE: "Incentive level downgraded",
    SanctionType.ADVERSE_REPORT_OR_DISCIPLINARY_CHARGE: "Adverse report or disciplinary charge",
    SanctionType.RETALIATORY_SEARCH: "Retaliatory search", SanctionType.PRESSURE_ON_FAMILY: "Pressure on family",
    SanctionType.OTHER: "Other",
}


def long_date(d: date) -> str:
    """'4 December 2026' (no weekday: for dates of birth, receipt and the like)."""
    return f"{d.day} {MONTHS[d.month - 1]} {d.year}"


# -- a protocol's deadlines in words (part: deadlines; the protocol diagram and its list) -------------


def duration_words(d: Duration) -> str:
    """'1 working day', '10 working days', '4 hours'; no working days: 'the same working day'."""
    if d.unit is Unit.WORKING_DAYS and d.amount == 0:
        return "the same working day"
    return str(d)


def _values_words(variable: str, values: Iterable[object]) -> str:
    """'the risk is high or standard', 'the escalation level is 1' (labels for the enums the protocol uses)."""
    words = []
    for v in values:
        if variable == "risk" and str(v) in {r.value for r in Risk}:
            words.append(RISK_LABELS[Risk(str(v))].lower())
        else:
            words.append(str(v).replace("_", " "))
    said = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
    return f"the {variable.replace('_', ' ')} is {said}"


def deadline_words(deadline: Deadline) -> str:
    """A protocol deadline as a lead reads it: 'Triage decision: 2 working days (4 hours if the risk is
    urgent)', 'Establishment response: 10 working days (only if the risk is high or standard)'."""
    rule = deadline.due
    extra: list[str] = []
    if rule.by is None:
        main = rule.default
    else:
        by_duration: dict[Duration, list[str]] = {}
        for value, d in rule.values.items():
            by_duration.setdefault(d, []).append(value)
        main = rule.default or max(by_duration, key=lambda d: len(by_duration[d]))
        extra = [f"{duration_words(d)} if {_values_words(rule.by, values)}"
                 for d, values in by_duration.items() if d != main]
    extra += [f"only if {_values_words(var, allowed)}" for var, allowed in deadline.when.items()]
    due = duration_words(main) if main is not None else "a time that depends on the case"
    return f"{deadline.label}: {due}" + (f" ({'; '.join(extra)})" if extra else "")


# -- the case page (issue 14, part "casepage"): outcomes, and what an action did --------------------

OUTCOME_LABELS = {
    "substantiated": "Substantiated", "partly_substantiated": "Partly substantiated",
    "not_substantiated": "Not substantiated", "inconclusive": "Inconclusive", "withdrawn": "Withdrawn",
    "recorded_only": "Recorded only", "left_custody": "Left custody", "referred_elsewhere": "Referred elsewhere",
}

# What an action did, said first in its success message ("Consent and risk recorded."): by trigger name
# where two triggers share a meaning, else by what the trigger means (its ``kind``).
DONE_BY_TRIGGER = {
    "reject_response": "Response rejected and the case escalated",
    "further_detriment": "Further detriment recorded; the case is back at triage",
}
DONE_BY_KIND = {
    "consent": "Consent and risk recorded", "consent_change": "Change of consent recorded",
    "referral": "Referred to the establishment", "contact": "Contact with the establishment confirmed",
    "decline": "Case declined", "record_only": "Case recorded only", "response": "Response recorded",
    "escalation": "Case escalated", "finding": "Response accepted and finding proposed",
    "follow_up": "Follow-up completed", "retriage": "Further detriment recorded; the case is back at triage",
    "closure": "Finding confirmed and case closed", "send_back": "Finding sent back to assessment",
    "withdrawal": "Withdrawal recorded; the case is closed",
    "left_custody": "Recorded that the person has left custody; the case is closed",
    "reopen": "Case reopened",
}


def done_words(trigger: str, kind: str | None, label: str) -> str:
    """What an action did, as the first sentence of its success message (no full stop)."""
    return DONE_BY_TRIGGER.get(trigger) or DONE_BY_KIND.get(kind or "") or f"Recorded: {label}"


# -- forms part (issue 14): the person's number, named as the establishment names it --------------------

# (label, hint) of the person's number on the report, by the type of the establishment holding them.
_PRISON_NUMBER = ("Prison number", "For example, A1234BC")
NUMBER_LABELS: dict[EstablishmentType, tuple[str, str]] = {
    EstablishmentType.PRISON: _PRISON_NUMBER,
    EstablishmentType.YOUNG_OFFENDER_INSTITUTION: _PRISON_NUMBER,
    EstablishmentType.SECURE_TRAINING_CENTRE: _PRISON_NUMBER,
    EstablishmentType.IMMIGRATION_REMOVAL_CENTRE: ("Home Office reference", "For example, B1234567"),
    EstablishmentType.SHORT_TERM_HOLDING_FACILITY: ("Home Office reference", "For example, B1234567"),
    EstablishmentType.POLICE_CUSTODY: ("Custody record number", "As written on the custody record"),
    EstablishmentType.COURT_CUSTODY: ("Prison number or custody record number",
                                      "The prison number if they have one, else the custody record number"),
    EstablishmentType.ESCORT: ("Prison number or Home Office reference",
                               "The number the prison or the Home Office gave the person"),
}
NUMBER_LABEL = _PRISON_NUMBER  # before the establishment is known


def number_label(kind: EstablishmentType | None) -> tuple[str, str]:
    """What the person's number is called where they are held, and a hint: 'Prison number', 'Home Office
    reference', 'Custody record number'."""
    return NUMBER_LABELS.get(kind, NUMBER_LABEL) if kind is not None else NUMBER_LABEL


RISK_MEANINGS = {
    Risk.URGENT: "The person is at immediate risk of serious harm.",
    Risk.HIGH: "The person is at risk of serious harm, but not immediately.",
    Risk.STANDARD: "No immediate or serious risk to the person is known.",
}
