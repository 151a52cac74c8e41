"""The case page: summary, identity on request, protocol diagram, deadlines, actions, notes, timeline.

Every view starts with ``get_case`` (a case the user may not see is a 404). Changes are POSTs with
CSRF; each commits once and redirects back with a banner. Identity, the description, note text and
the free text of history never go into a URL, a flash message, a title or an error message; they are
shown only inside the reader's unlock window (``reprisals.sensitive``: "Show identity" with a reason),
and each page that shows them is a ``viewed_sensitive`` access-log entry, committed with the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import GovSelect, GovSubmitInput, GovTextArea
from markupsafe import Markup
from wtforms import SelectField, SubmitField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional

from reprisals.access import actor_for, can_view_identity, is_owning_lead
from reprisals.deadlines import extend_deadline as extend_service
from reprisals.deadlines import pause_deadline, resume_deadline
from reprisals.errors import InvalidInput, NotAllowed
from reprisals.letters import uk_date
from reprisals.models import Case, Role, User
from reprisals.protocol import SECOND_LEAD_OUTCOMES, kind_of, proposed_by_actor
from reprisals.pseudonyms import person_view
from reprisals.readside import case_facts as facts
from reprisals.sensitive import (
    Sensitive,
    is_free_text,
    letters_for,
    may_see_who_has_seen,
    read_sensitive,
    split_event,
    unlock,
    who_has_seen,
)
from reprisals.services import (
    LONDON,
    MAX_TEXT,
    Links,
    add_note,
    advance_case,
    allowed_actions,
    assign_case,
    assignable_users,
    corrected_moments,
    get_case,
    linked_cases,
    occurred_at_of,
    redate_action,
    why_not_now,
)
from reprisals.unmasking import (
    REQUESTED,
    UnmaskRequest,
    decision_reasons,
    may_request,
    requests_for_case,
)
from reprisals.vocabulary import done_words, moment_words
from reprisals.wording import explain, not_a_working_day
from web.context import db, me, now, runtime
from web.diagram import render_diagram, render_svg, visited_stages
from web.forms_dynamic import ActionForm, GovDateField, Required, action_form, label_of, words
from web.people import MatchForm
from web.security import signed_in
from workflow.deadlines import NotAWorkingDay
from workflow.errors import GuardFailed, MissingFields, NotPermitted, StaleInstance, TransitionNotAllowed, WorkflowError
from workflow.history import VerificationReport, verify_instance
from workflow.moments import recorded_later
from workflow.spec import FieldType, WorkflowSpec

bp = Blueprint("case", __name__, url_prefix="/cases")

NATIONS = {"england": "England", "wales": "Wales", "scotland": "Scotland", "northern_ireland": "Northern Ireland"}


# -- forms ------------------------------------------------------------------------------------------


class NoteForm(FlaskForm):
    note = TextAreaField("Add a note", widget=GovTextArea(),
                         description="Notes are stored encrypted and only people who may see the person's "
                                     "identity can read them.",
                         validators=[Required("Enter the note"),
                                     Length(max=MAX_TEXT, message=f"The note must be {MAX_TEXT} characters or fewer")])
    submit = SubmitField("Add note", widget=GovSubmitInput())


class IdentityForm(FlaskForm):
    reason = TextAreaField("Why do you need to see who this person is?", widget=GovTextArea(),
                           description="Your reason is recorded in the case history with your name.",
                           validators=[Required("Enter why you need to see who this person is"),
                                       Length(max=500, message="The reason must be 500 characters or fewer")])
    submit = SubmitField("Show identity", widget=GovSubmitInput())


class AssignForm(FlaskForm):
    assignee = SelectField("Assign to", widget=GovSelect(), choices=[], validate_choice=True)
    reason = TextAreaField("Reason (optional)", widget=GovTextArea(),
                           validators=[Optional(), Length(max=2000, message="The reason must be 2000 characters "
                                                                            "or fewer")])
    submit = SubmitField("Assign", widget=GovSubmitInput())


class ExtendForm(FlaskForm):
    new_due = GovDateField("New due date", validators=[Required("Enter the new due date")],
                           description="The deadline falls due at the end of the working day. For example, 6 5 2025")
    reason = TextAreaField("Reason for the extension", widget=GovTextArea(),
                           validators=[Required("Enter the reason for the extension"),
                                       Length(max=2000, message="The reason must be 2000 characters or fewer")])
    submit = SubmitField("Extend the deadline", widget=GovSubmitInput())


class PauseForm(FlaskForm):
    reason = TextAreaField("Reason for pausing the clock", widget=GovTextArea(),
                           validators=[Required("Enter the reason for pausing the clock"),
                                       Length(max=2000, message="The reason must be 2000 characters or fewer")])
    submit = SubmitField("Pause the clock", widget=GovSubmitInput())


class ResumeForm(FlaskForm):
    reason = TextAreaField("Reason for restarting the clock", widget=GovTextArea(),
                           validators=[Required("Enter the reason for restarting the clock"),
                                       Length(max=2000, message="The reason must be 2000 characters or fewer")])
    submit = SubmitField("Restart the clock", widget=GovSubmitInput())


class RedateForm(ActionForm):
    """When a protocol action really happened: the action forms' date and optional time, and why."""

    occurred_on = GovDateField("When did this really happen?", validators=[Required("Enter the date it happened")])
    reason = TextAreaField("Why is the date being corrected?", widget=GovTextArea(),
                           description="Your reason is recorded in the case history with your name.",
                           validators=[Required("Enter why the date is being corrected"),
                                       Length(max=2000, message="The reason must be 2000 characters or fewer")])
    submit = SubmitField("Correct the date", widget=GovSubmitInput())


# -- helpers ----------------------------------------------------------------------------------------


DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


def local(at: datetime | None) -> str:
    """'Tue 6 May 2025, 5:00pm' in UK time. (No strftime: its locale lookups cost 40 µs a call, and a
    long timeline formats hundreds of times.)"""
    if at is None:
        return ""
    t = at.astimezone(LONDON)
    hour = t.hour % 12 or 12
    return (f"{DAYS[t.weekday()]} {t.day} {MONTHS[t.month - 1]} {t.year}, {hour}:{t.minute:02d}"
            f"{'am' if t.hour < 12 else 'pm'}")


def _case(reference: str) -> Case:
    return get_case(db(), me(), reference)


def _sensitive(case: Case, what: str) -> Sensitive:
    """What the signed-in user may see of the case's sensitive content now; inside their window the view is
    logged (the caller commits once the page is built)."""
    return read_sensitive(db(), runtime().cipher, me(), case, now(), via="web", what=what,
                          client=request.remote_addr)


def _committing(view: Sensitive, answer: ResponseReturnValue) -> ResponseReturnValue:
    """Commit the view's access-log entry, once the page is built (a logged view never ends in an error)."""
    if view.unlocked:
        db().commit()
    return answer


LOCKED_FIELD = "Recorded — show identity to read it"
LOCKED_REASON = "Reason given — show identity to read it"
HIDDEN_FIELD = "Recorded (shown only to people who may see who the person is)"
HIDDEN_REASON = "Reason given (shown only to people who may see who the person is)"
PERSON_KINDS = ("person_match_confirmed", "person_match_dismissed")


def _is_lead(case: Case) -> bool:
    return "lead" in actor_for(me(), case).roles


@dataclass(frozen=True)
class TimelineItem:
    at: str  # when it happened
    at_iso: str
    who: str
    what: str
    details: list[tuple[str, str]]
    late: str | None = None  # "recorded 2 days later", when it was entered after the day it happened
    seq: int = 0
    correctable: bool = False  # a protocol action: a lead may correct when it happened


def _field_value(kind: FieldType, value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(words(str(v)) for v in value)
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if kind is FieldType.DATE:
        try:
            d = datetime.fromisoformat(str(value)).date()
            return f"{d.day} {MONTHS[d.month - 1]} {d.year}"
        except ValueError:
            return str(value)
    if kind is FieldType.CHOICE:
        return words(str(value))
    return str(value)


def _timeline(spec: WorkflowSpec, events: list[Any], users: dict[str, User],
              view: Sensitive, visible_links: frozenset[str] = frozenset()) -> list[TimelineItem]:
    """Newest first. Free text (summaries, assessments, names typed by hand, reasons) may identify the
    person: it is shown only inside the viewer's unlock window; before it, that it was given. A linked case
    is named only if the viewer may see it (``visible_links``)."""
    labels = {name: s.label for name, s in spec.stages.items()}
    deadline_labels = {d.name: d.label for s in spec.stages.values() for d in s.deadlines}
    corrections = corrected_moments(events)

    def name_of(uid: Any) -> str:
        u = users.get(str(uid)) if uid is not None else None
        return u.name if u else ("Nobody" if uid is None else "Unknown user")

    locked_field, locked_reason = (LOCKED_FIELD, LOCKED_REASON) if view.may_unlock else (HIDDEN_FIELD, HIDDEN_REASON)

    def reason_of(free: dict[str, object]) -> list[tuple[str, str]]:
        if "reason" not in free:
            return []
        return [("Reason", view.text(free["reason"]) or locked_reason)]

    items: list[TimelineItem] = []
    for e in reversed(events):
        who = name_of(e.actor_id) if e.actor_id else "The system"
        details: list[tuple[str, str]] = []
        data, free = split_event(spec, e)
        if e.kind == "created":
            what = "Case opened"
            if data.get("linked_case"):
                details.append(("Linked to", str(data["linked_case"]) if data["linked_case"] in visible_links
                                else "An earlier case you cannot see"))
        elif e.kind == "case_linked":
            what = "A new case was opened linked to this one"
            if data.get("linked_case") in visible_links:
                details.append(("New case", str(data["linked_case"])))
        elif e.kind == "transition":
            trig = spec.triggers.get(e.trigger or "")
            what = trig.label if trig else words(e.trigger or "")
            details.append(("Stage", f"{labels.get(e.from_stage or '', e.from_stage)} to "
                                     f"{labels.get(e.to_stage or '', e.to_stage)}"))
            given = dict((e.data or {}).get("fields") or {})  # in the order given; free text set apart
            for fname in given:
                fspec = trig.fields.get(fname) if trig else None
                label = label_of(fname, fspec) if fspec else words(fname)
                if is_free_text(fspec):
                    if fname in free:
                        details.append((label, view.text(free[fname]) or locked_field))
                else:
                    details.append((label, _field_value(fspec.type if fspec else FieldType.STRING, given[fname])))
        elif e.kind == "identity_viewed":
            what = "Viewed identity" + (" (by the operator, at the command line)" if data.get("via") == "cli"
                                        else " (through the API)" if data.get("via") == "api" else "")
            details += reason_of(free)
        elif e.kind == "identity_corrected":
            what = "Corrected who the person is"
            changed = data.get("changed")
            if isinstance(changed, list) and changed:
                details.append(("Changed", ", ".join(str(c) for c in changed).capitalize()))
            details += reason_of(free)
        elif e.kind in ("person_match_confirmed", "person_match_dismissed"):
            other = str(data.get("other_case") or "")
            named = other if other in visible_links else "another case"
            what = (f"Confirmed as the same person as {named}" if e.kind == "person_match_confirmed"
                    else f"Recorded as not the same person as {named}")
        elif e.kind == "unmask_requested":
            what = "Asked to see who the person is"
            details += reason_of(free)
        elif e.kind in ("unmask_approved", "unmask_refused"):
            what = "Request to see who the person is " + ("approved" if e.kind == "unmask_approved" else "refused")
            details += reason_of(free)
        elif e.kind == "unmask_viewed":
            what = "Saw who the person is (approved request)"
        elif e.kind == "note_added":
            what = "Note added"
        elif e.kind == "assigned":
            what = f"Assigned to {name_of(data.get('to'))}" if data.get("to") else "Unassigned"
            if data.get("from"):
                details.append(("Previously", name_of(data.get("from"))))
            details += reason_of(free)
        elif e.kind in ("deadline_extended", "deadline_paused", "deadline_resumed"):
            dl = deadline_labels.get(str(data.get("deadline")), words(str(data.get("deadline"))))
            verb = {"deadline_extended": "extended", "deadline_paused": "clock paused",
                    "deadline_resumed": "clock restarted"}[e.kind]
            what = f"Deadline {verb}: {dl}"
            if data.get("to"):
                details.append(("Now due", local(datetime.fromisoformat(str(data["to"])))))
            details += reason_of(free)
        elif e.kind == "action_redated":
            corrected = next((x for x in events if x.seq == e.corrects_seq), None)
            action = spec.triggers[corrected.trigger].label if corrected is not None and \
                corrected.trigger in spec.triggers else "an action"
            what = f"Date corrected: {action}"
            details.append(("It happened", local(datetime.fromisoformat(str(data["corrected_to"])))))
            details.append(("Previously recorded as", local(datetime.fromisoformat(str(data["was"])))))
            details += reason_of(free)
        else:
            what = words(e.kind)
        happened = occurred_at_of(e, corrections)
        items.append(TimelineItem(local(happened), happened.isoformat(), who, what, details,
                                  recorded_later(happened, e.at), e.seq, e.kind == "transition"))
    return items


def _case_link(reference: str) -> Markup:
    return Markup('<a class="govuk-link" href="{}">{}</a>').format(url_for("case.show", reference=reference),
                                                                   reference)


def _summary_cards(case: Case, spec: WorkflowSpec, overdue: bool, assignee: User | None,
                   lead: bool, links: Links, view: Sensitive) -> list[dict[str, Any]]:
    """The facts as GOV.UK summary cards: the case, who is on it and where, and its linked cases."""
    bodies = facts.body_names(db())
    stage = spec.stages[case.stage].label if case.stage in spec.stages else case.stage
    stage_html = Markup("{}{}").format(stage, Markup(' <strong class="govuk-tag govuk-tag--red">Overdue</strong>')
                                       if overdue else "")
    parties = ", ".join(f"{bodies.get(c, c)} ({c})" for c in sorted(case.party_codes)) or "None"
    assigned = f"{assignee.name} ({assignee.body_code})" if assignee else "Not assigned"
    about: list[dict[str, Any]] = [
        {"key": {"text": "Reference"}, "value": {"text": case.reference}},
        {"key": {"text": "Stage"}, "value": {"html": stage_html}},
        {"key": {"text": "Risk"}, "value": {"text": words(case.risk.value)}},
        {"key": {"text": "Consent"},
         "value": {"text": (f"{words(case.consent.value)}, recorded {case.consent_date:%-d %B %Y}"
                            if case.consent and case.consent_date else
                            words(case.consent.value) if case.consent else "Not recorded yet")}},
        {"key": {"text": "Received"},
         "value": {"text": f"{local(case.received_at)} ({words(case.channel.value)})"
                   if case.channel else local(case.received_at)}},
        {"key": {"text": "Age group"}, "value": {"text": words(case.age_group.value)}},
        {"key": {"text": "Sanction types"},
         "value": {"text": ", ".join(words(s) for s in case.sanction_types) or "None recorded"}},
    ]
    if case.outcome is not None:
        about.append({"key": {"text": "Outcome"},
                      "value": {"text": f"{words(case.outcome.value)} (closed {local(case.closed_at)})"}})
    override = view.override_reason()
    if override:
        shown = words(override) if view.unlocked else (
            f"{words(override)} ({(LOCKED_REASON if view.may_unlock else HIDDEN_REASON).lower()})")
        about.append({"key": {"text": "Consent overridden"}, "value": {"text": shown}})
    who: list[dict[str, Any]] = [
        {"key": {"text": "Owning body"},
         "value": {"text": f"{bodies.get(case.owning_body_code, case.owning_body_code)} ({case.owning_body_code})"}},
        {"key": {"text": "Party bodies"}, "value": {"text": parties}},
        {"key": {"text": "Establishment"},
         "value": {"text": f"{case.establishment.name} ({words(case.establishment.type.value).lower()}, "
                           f"{NATIONS.get(case.establishment.nation.value, case.establishment.nation.value)})"}},
        {"key": {"text": "Assigned to"}, "value": {"text": assigned},
         **({"actions": {"items": [{"href": url_for("case.assign", reference=case.reference), "text": "Change",
                                    "visuallyHiddenText": "who the case is assigned to"}]}}
            if lead and case.stage != "closed" else {})},
    ]
    cards = [{"card": {"title": {"text": "The case"}}, "rows": about, "attributes": {"id": "facts"}},
             {"card": {"title": {"text": "Bodies and establishment"}}, "rows": who}]
    linked: list[dict[str, Any]] = []
    if links.linked_to is not None:
        linked.append({"key": {"text": "Linked to"},
                       "value": {"html": Markup("{} (this case was opened from it)").format(
                           _case_link(links.linked_to.reference))}})
    if links.linked_from:
        linked.append({"key": {"text": "Linked cases"},
                       "value": {"html": Markup('<ul class="govuk-list">{}</ul>').format(
                           Markup("").join(Markup("<li>{}</li>").format(_case_link(c.reference))
                                           for c in links.linked_from))}})
    if linked:
        cards.append({"card": {"title": {"text": "Links to other cases"}}, "rows": linked})
    return cards


# -- the top of every tab: the status banner and the sub-navigation -----------------------------------

# The case page's tabs, each its own URL (letters and documents can join them later).
TABS = (("case.show", "Overview"), ("case.timeline", "Timeline"), ("case.notes", "Notes"),
        ("case.deadlines", "Deadlines"))


def _calendar(case: Case) -> Any:
    return runtime().timers.calendar(case.instance.calendar)


def _header(case: Case, spec: WorkflowSpec, view: Sensitive, tab: str) -> dict[str, Any]:
    """What every tab shows above its own content, and what the templates need for it."""
    running = facts.deadlines(db(), case, spec, _calendar(case), now(), view)
    waiting = facts.proposal(db(), case, spec, view)
    status = facts.status(runtime().engine, db(), me(), case, spec, now(), running, waiting)
    return {"case": case, "spec": spec, "status": status, "proposal": waiting, "running": running,
            "overdue": status.overdue, "tab": tab, "tabs": TABS, "lead": _is_lead(case), "sensitive": view,
            "may_identify": view.may_unlock, "local": local, "moment_words": moment_words, "uk_date": uk_date,
            "locked_reason": LOCKED_REASON if view.may_unlock else HIDDEN_REASON,
            "stage_label": spec.stages[case.stage].label if case.stage in spec.stages else case.stage}


def _overview(case: Case, status: int = 200) -> ResponseReturnValue:
    rt = runtime()
    user = me()
    spec = rt.engine.spec_of(case.instance)
    events = facts.history(db(), case)
    view = _sensitive(case, "case page")
    head = _header(case, spec, view, "case.show")
    unmask = _unmask_panel(case, user)
    users = facts.users_by_id(db(), {case.assigned_user_id} | {r.requested_by_id for r in unmask.rows}
                              | {r.decided_by_id for r in unmask.rows})
    assignee = users.get(str(case.assigned_user_id)) if case.assigned_user_id else None
    links = linked_cases(db(), user, case)
    # "Open a linked case": a lead of the owning body, on a closed case (after the reopen window, the only way).
    may_link = (case.closed_at is not None and user.active and user.role is Role.LEAD
                and user.body_code == case.owning_body_code)
    diagram = render_diagram(spec, case.stage, visited_stages(e.to_stage for e in events))  # drawing and list
    page = render_template(
        "case/show.html", title=f"Case {case.reference}", **head,
        cards=_summary_cards(case, spec, head["overdue"], assignee, head["lead"], links, view),
        may_link=may_link, users=users, diagram=diagram, letters=letters_for(view), unmask=unmask, at=now(),
        person=person_view(db(), user, case), may_correct=is_owning_lead(user, case),
        match_form=MatchForm(formdata=None))
    return _committing(view, (page, status))


def _visible_links(case: Case, events: list[Any]) -> frozenset[str]:
    """The linked cases and the cases named by decisions on possible matches, where the viewer may see them."""
    links = linked_cases(db(), me(), case)
    visible = {c.reference for c in links.linked_from} | ({links.linked_to.reference} if links.linked_to else set())
    named = {str(e.data.get("other_case")) for e in events if e.kind in PERSON_KINDS and e.data}
    return frozenset(visible | facts.visible_references(db(), me(), named - visible))


def _timeline_tab(case: Case) -> ResponseReturnValue:
    user = me()
    spec = runtime().engine.spec_of(case.instance)
    events = facts.history(db(), case)
    view = _sensitive(case, "case timeline")
    head = _header(case, spec, view, "case.timeline")
    seen = who_has_seen(db(), view, case) if may_see_who_has_seen(user, case) else None
    ids = facts.people_named(events) | {s.user_id for s in seen or []} | {s.approved_by for s in seen or []}
    users = facts.users_by_id(db(), ids)
    integrity = verify_instance(db(), case.instance_id)  # a few ms for hundreds of events
    page = render_template(
        "case/timeline.html", title=f"Timeline: case {case.reference}", **head, users=users, seen=seen,
        timeline=_timeline(spec, events, users, view, _visible_links(case, events)), integrity=integrity,
        problems=_problems(integrity, case.instance_id), may_export=user.role in (Role.LEAD, Role.AUDITOR))
    return _committing(view, (page, 200))


def _notes_tab(case: Case, note_form: NoteForm, status: int = 200) -> ResponseReturnValue:
    spec = runtime().engine.spec_of(case.instance)
    view = _sensitive(case, "case notes")
    head = _header(case, spec, view, "case.notes")
    users = facts.users_by_id(db(), {n.author_id for n in view.notes or []})
    page = render_template("case/notes.html", title=f"Notes: case {case.reference}", **head, users=users,
                           form=note_form, may_add_note=bool(actor_for(me(), case).roles))
    return _committing(view, (page, status))


def _deadlines_tab(case: Case) -> ResponseReturnValue:
    spec = runtime().engine.spec_of(case.instance)
    view = _sensitive(case, "case deadlines")
    head = _header(case, spec, view, "case.deadlines")
    nation = NATIONS.get(case.establishment.nation.value, case.establishment.nation.value)
    page = render_template("case/deadlines.html", title=f"Deadlines: case {case.reference}", **head, nation=nation)
    return _committing(view, (page, 200))


@dataclass(frozen=True)
class UnmaskPanel:
    """The case page's "See who the person is" section: an auditor's own requests (with the decisions'
    reasons), or for a lead of the owning body the requests waiting for a decision."""

    may_request: bool
    may_decide: bool
    mine: list[UnmaskRequest]
    pending: list[UnmaskRequest]
    reasons: dict[int, str]

    @property
    def rows(self) -> list[UnmaskRequest]:
        return self.mine + self.pending


def _unmask_panel(case: Case, user: User) -> UnmaskPanel:
    asks, decides = may_request(user, case), is_owning_lead(user, case)
    rows = requests_for_case(db(), case) if asks or decides else []
    mine = [r for r in rows if r.requested_by_id == user.id] if asks else []
    pending = [r for r in rows if r.status == REQUESTED and r.requested_by_id != user.id] if decides else []
    reasons = decision_reasons(db(), runtime().cipher, case, mine) if mine else {}
    return UnmaskPanel(asks, decides, mine, pending, reasons)


def _problems(report: VerificationReport, instance_id: int) -> list[str]:
    """The history check's findings as sentences about this case (they name the instance by its id)."""
    out = []
    for finding in report.findings:
        text = finding.message.removeprefix(f"instance {instance_id}: ")
        out.append(text[:1].upper() + text[1:] + ".")
    return out


# -- the page and its tabs ----------------------------------------------------------------------------


@bp.get("/<reference>")
@signed_in
def show(reference: str) -> ResponseReturnValue:
    return _overview(_case(reference))


@bp.get("/<reference>/timeline")
@signed_in
def timeline(reference: str) -> ResponseReturnValue:
    return _timeline_tab(_case(reference))


@bp.get("/<reference>/notes")
@signed_in
def notes(reference: str) -> ResponseReturnValue:
    return _notes_tab(_case(reference), NoteForm(formdata=None))


@bp.get("/<reference>/deadlines")
@signed_in
def deadlines(reference: str) -> ResponseReturnValue:
    return _deadlines_tab(_case(reference))


@bp.get("/<reference>/diagram.svg")
@signed_in
def diagram(reference: str) -> ResponseReturnValue:
    case = _case(reference)
    rt = runtime()
    events = facts.history(db(), case)
    svg = render_svg(rt.engine.spec_of(case.instance), case.stage, visited_stages(e.to_stage for e in events))
    return Response('<?xml version="1.0" encoding="UTF-8"?>\n' + svg, mimetype="image/svg+xml")


# -- identity ---------------------------------------------------------------------------------------


@bp.get("/<reference>/export.json")
@signed_in
def export(reference: str) -> ResponseReturnValue:
    """The case's history with its chain and the newest signed checkpoint naming it (leads and auditors):
    sealed values stay sealed. Recorded in the access log before it is sent."""
    from reprisals.access_log import record
    from reprisals.checkpoints import export_case
    from reprisals.proof import canonical

    case = _case(reference)
    if me().role not in (Role.LEAD, Role.AUDITOR):
        abort(403)
    document = export_case(db(), case.instance_id, case.reference, runtime().settings.checkpoint_dir)
    record(db(), now(), "export", actor=me(), case_id=case.id, client=request.remote_addr,
           detail={"what": "case history", "events": len(document["events"])})
    db().commit()
    return Response(canonical(document) + b"\n", mimetype="application/json", headers={
        "Content-Disposition": f'attachment; filename="{case.reference}-history.json"'})


@bp.route("/<reference>/identity", methods=["GET", "POST"])
@signed_in
def identity(reference: str) -> ResponseReturnValue:
    case = _case(reference)
    if not can_view_identity(me(), case):
        abort(403)
    form = IdentityForm()
    if form.validate_on_submit():
        rt = runtime()
        try:
            until = unlock(db(), rt.engine, rt.cipher, me(), case, form.reason.data or "", now(), via="web",
                           client=request.remote_addr)
        except InvalidInput as exc:
            db().rollback()
            problem = exc.errors.get("reason", "is required")
            form.reason.errors = ["Enter why you need to see who this person is" if problem == "is required"
                                  else f"The reason {problem}"]
        else:
            db().commit()
            flash(f"Who the person is, the notes and what was typed into the case are shown to you until "
                  f"{local(until)}. Each time you open the case until then is recorded.", "success")
            return redirect(url_for("case.show", reference=case.reference) + "#person")
    return render_template("case/identity_reason.html", title=f"See who the person is: case {case.reference}",
                           case=case, form=form)


# -- notes ------------------------------------------------------------------------------------------


@bp.post("/<reference>/notes")
@signed_in
def note(reference: str) -> ResponseReturnValue:
    case = _case(reference)
    if not actor_for(me(), case).roles:
        abort(403)
    form = NoteForm()
    if form.validate_on_submit():
        rt = runtime()
        try:
            add_note(db(), rt.engine, rt.cipher, me(), case, form.note.data or "", now())
        except InvalidInput as exc:
            db().rollback()
            problem = exc.errors.get("text", "is required")
            form.note.errors = ["Enter the note" if problem == "is required" else f"The note {problem}"]
        except NotAllowed:
            db().rollback()
            abort(403)
        else:
            db().commit()
            flash("Note added.", "success")
            return redirect(url_for("case.notes", reference=case.reference))
    return _notes_tab(case, form)


# -- assignment -------------------------------------------------------------------------------------


@bp.route("/<reference>/assign", methods=["GET", "POST"])
@signed_in
def assign(reference: str) -> ResponseReturnValue:
    case = _case(reference)
    if not _is_lead(case):
        abort(403)
    candidates = assignable_users(db(), case.owning_body_code)  # the owning body's own people only
    form = AssignForm()
    form.assignee.choices = [SelectChoice("", "Not assigned")] + [
        SelectChoice(str(u.id), f"{u.name} ({u.body_code}, {u.role.value})") for u in candidates]
    form_error = None
    if request.method == "GET":
        form.assignee.data = str(case.assigned_user_id or "")
    elif form.validate_on_submit():
        chosen = next((u for u in candidates if str(u.id) == form.assignee.data), None)
        try:
            assign_case(db(), runtime().engine, me(), case, chosen, now(),
                        reason=(form.reason.data or "").strip() or None, messenger=runtime().messenger)
        except InvalidInput as exc:
            db().rollback()
            form.assignee.errors = ["The person to assign " + exc.errors.get("assignee", "is not one you can choose")]
        except NotAllowed as exc:
            db().rollback()
            form_error = str(exc).capitalize()
        except StaleInstance:
            db().rollback()
            form_error = ("This case was changed by someone else while you were working. Check the assignment "
                          "and try again.")
        else:
            db().commit()
            flash(f"Case {case.reference} assigned to {chosen.name}." if chosen else
                  f"Case {case.reference} is no longer assigned.", "success")
            return redirect(url_for("case.show", reference=case.reference))
    return render_template("case/assign.html", title=f"Assign case {case.reference}", case=case, form=form,
                           form_error=form_error)


# -- deadlines --------------------------------------------------------------------------------------

_DEADLINE_FORMS: dict[str, type[FlaskForm]] = {"extend": ExtendForm, "pause": PauseForm, "resume": ResumeForm}


@bp.route("/<reference>/deadlines/<name>/<operation>", methods=["GET", "POST"])
@signed_in
def deadline(reference: str, name: str, operation: str) -> ResponseReturnValue:
    case = _case(reference)
    if operation not in _DEADLINE_FORMS:
        abort(404)
    if not _is_lead(case):
        abort(403)
    spec = runtime().engine.spec_of(case.instance)
    found = next((d for d in facts.deadlines(db(), case, spec, _calendar(case), now()) if d.name == name), None)
    if found is None:
        abort(404)
    form: Any = _DEADLINE_FORMS[operation]()
    form_error = None
    if form.validate_on_submit():
        rt = runtime()
        reason = (form.reason.data or "").strip()
        try:
            if operation == "extend":
                due = rt.timers.calendar(case.instance.calendar).end_of(form.new_due.data)
                extend_service(db(), rt.engine, rt.timers, me(), case, name, due, reason, now())
            elif operation == "pause":
                pause_deadline(db(), rt.engine, rt.timers, me(), case, name, reason, now())
            else:
                resume_deadline(db(), rt.engine, rt.timers, me(), case, name, reason, now())
        except (WorkflowError, InvalidInput) as exc:
            db().rollback()
            message = str(exc)
            if isinstance(exc, NotAWorkingDay):  # part: deadlines
                form.new_due.errors = [not_a_working_day(exc)]
            elif operation == "extend" and "in the past" in message:
                form.new_due.errors = ["The new due date must be in the future"]
            elif operation == "extend" and "later than the current one" in message:
                form.new_due.errors = [f"The new due date must be after the current due date "
                                       f"({moment_words(found.due_at)})"]
            elif isinstance(exc, InvalidInput):
                form_error = "This deadline is no longer running."
            else:  # in the domain's words, naming the case (never an internal id)
                said = explain(exc, reference=case.reference, spec=rt.engine.spec_of(case.instance))
                form_error = said[0].upper() + said[1:] + ("" if said.endswith(".") else ".")
        else:
            db().commit()
            done = {"extend": "extended", "pause": "paused", "resume": "restarted"}[operation]
            flash(f"{found.label}: {'clock ' if operation != 'extend' else ''}{done}.", "success")
            return redirect(url_for("case.deadlines", reference=case.reference))
    heading = {"extend": f"Extend the deadline: {found.label}", "pause": f"Pause the clock: {found.label}",
               "resume": f"Restart the clock: {found.label}"}[operation]
    return render_template("case/deadline.html", title=heading, case=case, deadline=found, form=form,
                           moment_words=moment_words,
                           form_error=form_error, operation=operation)


# -- correcting when an action happened -------------------------------------------------------------


CHANGED_MEANWHILE = ("This case was changed by someone else while you were working. Check its history, then "
                     "submit the correction again if it is still right.")


@bp.route("/<reference>/events/<int(min=1, max=2147483647):seq>/date", methods=["GET", "POST"])
@signed_in
def redate(reference: str, seq: int) -> ResponseReturnValue:
    """A lead corrects when a protocol action happened (``services.redate_action``): a correction that
    points at it is added to the history and its deadlines are recomputed (decision 17)."""
    case = _case(reference)
    if not _is_lead(case):
        abort(403)
    rt = runtime()
    spec = rt.engine.spec_of(case.instance)
    events = facts.history(db(), case)
    target = next((e for e in events if e.seq == seq and e.kind == "transition"), None)
    if target is None:
        abort(404)
    trig = spec.triggers.get(target.trigger or "")
    action_label = trig.label if trig else words(target.trigger or "")
    was = occurred_at_of(target, corrected_moments(events))
    form = RedateForm()
    form_error = None
    if request.method == "GET":
        form.expected_version.data = str(case.instance.version)
    else:
        valid = form.validate_on_submit()
        if form.csrf_token.errors:
            abort(400)
        occurred_at = form.occurred_at(now().astimezone(LONDON).date())  # a time it cannot read: on its field
        stale = _int(form.expected_version.data) != case.instance.version
        if valid and not form.occurred_time.errors and stale:
            form_error = CHANGED_MEANWHILE
            form.expected_version.data = str(case.instance.version)
        elif valid and not form.occurred_time.errors:
            try:
                redate_action(db(), rt.engine, rt.timers, me(), case, seq, occurred_at, form.reason.data, now())
            except InvalidInput as exc:
                db().rollback()
                form_error = _redate_errors(form, exc.errors)
            except NotAllowed:
                db().rollback()
                abort(403)
            except StaleInstance:
                db().rollback()
                form_error = CHANGED_MEANWHILE
            else:
                db().commit()
                flash(f"Date corrected: {action_label}.", "success")
                return redirect(url_for("case.timeline", reference=case.reference))
    return render_template("case/redate.html", title=f"Correct the date: {action_label}: case {case.reference}",
                           case=case, form=form, form_error=form_error, action_label=action_label, seq=seq,
                           was=local(was))


def _redate_errors(form: RedateForm, errors: dict[str, str]) -> str | None:
    """The service's refusals on the fields they are about; what fits none, as one sentence."""
    loose = []
    for name, message in errors.items():
        if name == "occurred_at":
            if message == "is required":
                form.occurred_on.errors = [*form.occurred_on.errors, "Enter the date it happened"]
            else:
                target = form.occurred_time if message.startswith("needs a time") else form.occurred_on
                target.errors = [*target.errors, f"The date it happened {message}"]
        elif name == "reason":
            form.reason.errors = [*form.reason.errors, "Enter why the date is being corrected"
                                  if message == "is required" else f"The reason {message}"]
        else:
            loose.append("This is not an action of this case's history" if name == "event"
                         else f"{name.replace('_', ' ').capitalize()} {message}")
    return "; ".join(loose) + "." if loose else None


# -- actions ----------------------------------------------------------------------------------------


def _int(value: Any) -> int | None:
    text = str(value or "").strip()
    return int(text) if text.isdigit() and len(text) < 10 else None


def _choice_value(choice: Any) -> Any:
    return choice.value if isinstance(choice, SelectChoice) else choice[0] if isinstance(choice, tuple) else choice


def _only_solo_outcomes(form: ActionForm, case: Case, spec: WorkflowSpec, trigger: str) -> None:
    """The lead who proposed the finding is offered only the outcomes they may close with alone."""
    if kind_of(spec, trigger) != "closure" or "outcome" not in form:
        return
    if not proposed_by_actor(case.instance.variables, actor_for(me(), case).id):
        return
    field = form["outcome"]
    field.choices = [c for c in (field.choices or []) if _choice_value(c) not in SECOND_LEAD_OUTCOMES]
    field.description = ("You proposed the finding, so you may close the case alone only with these outcomes. "
                         "Another lead of your body confirms the others.")


def _render_action(case: Case, spec: WorkflowSpec, trigger: str, form: ActionForm, *, form_error: str | None = None,
                   conflict: list[TimelineItem] | None = None, possible: bool = True,
                   status: int = 200, view: Sensitive | None = None) -> ResponseReturnValue:
    trig = spec.triggers[trigger]
    _only_solo_outcomes(form, case, spec, trigger)
    shows_text = conflict is not None or facts.is_decision(spec, trigger, case.stage)
    view = view or (_sensitive(case, "action form") if shows_text else None)
    # The response, the proposed finding and its assessment, where the decision is made (decision 30).
    decision = facts.decision_context(db(), case, spec, trigger, view)
    page = render_template(
        "case/action.html", title=f"{trig.label}: case {case.reference}", case=case, trigger=trig, form=form,
        form_error=form_error, conflict=conflict, possible=possible, decision=decision, local=local,
        moment_words=moment_words,
        stage_label=spec.stages[case.stage].label if case.stage in spec.stages else case.stage,
        field_names=form.field_names(), may_unlock=view.may_unlock if view is not None else False)
    return _committing(view, (page, status)) if view is not None else (page, status)


def _conflict(case: Case, spec: WorkflowSpec, trigger: str, form: ActionForm) -> ResponseReturnValue:
    """Someone else changed the case: show what they did, keep what this user entered, and let them
    submit again against the new version."""
    events = facts.history(db(), case, _int(form.seen_seq.data) or 0)
    users = facts.users_by_id(db(), facts.people_named(events))
    view = _sensitive(case, "action form")
    changes = _timeline(spec, events, users, view)
    form.expected_version.data = str(case.instance.version)
    form.seen_seq.data = str(case.instance.head_seq)
    for f in form:
        f.errors = []
    possible = trigger in allowed_actions(runtime().engine, me(), case, now())
    return _render_action(case, spec, trigger, form, conflict=changes, possible=possible, status=409, view=view)


def _not_at_this_stage(case: Case, spec: WorkflowSpec, trigger: str) -> ResponseReturnValue:
    """An action the user may take, but not at the case's stage: say so, and what can be done now (409)."""
    message = explain(TransitionNotAllowed(trigger, case.stage), reference=case.reference, spec=spec,
                      next_actions=allowed_actions(runtime().engine, me(), case, now()))
    return render_template("errors/error.html", title="This cannot be done now",
                           message=message[0].upper() + message[1:], back_to_case=case.reference), 409


@bp.route("/<reference>/actions/<trigger>", methods=["GET", "POST"])
@signed_in
def action(reference: str, trigger: str) -> ResponseReturnValue:
    case = _case(reference)
    rt = runtime()
    spec = rt.engine.spec_of(case.instance)
    trig = spec.triggers.get(trigger)
    if trig is None:
        abort(404)
    if not trig.roles & actor_for(me(), case).roles:
        abort(403)  # not theirs to do at any stage (auditors, staff for a lead's action)
    if request.method == "GET":
        if case.stage not in trig.sources:
            return _not_at_this_stage(case, spec, trigger)
        refusal = why_not_now(rt.engine, me(), case, trigger, now())
        if refusal:  # whatever is typed (reopening after six months): say why, before the form is filled
            return render_template("errors/error.html", title="This cannot be done now",
                                   message=f"{trig.label} cannot be done on {case.reference}: {refusal}.",
                                   back_to_case=case.reference), 409
        form = action_form(spec, trig, case.instance.variables, fresh=True)  # forms part: only what applies
        form.expected_version.data = str(case.instance.version)
        form.seen_seq.data = str(case.instance.head_seq)
        return _render_action(case, spec, trigger, form)

    form = action_form(spec, trig, case.instance.variables, fresh=False)
    if not form.validate_on_submit() and form.csrf_token.errors:
        abort(400)
    expected = _int(form.expected_version.data)
    if expected != case.instance.version:
        return _conflict(case, spec, trigger, form)
    if case.stage not in trig.sources:
        return _not_at_this_stage(case, spec, trigger)
    occurred_at = form.occurred_at(now().astimezone(LONDON).date())
    if form.errors or form.occurred_time.errors:
        return _render_action(case, spec, trigger, form)
    try:
        advance_case(db(), rt.engine, me(), case, trigger, form.values(), now(), expected_version=expected,
                     messenger=rt.messenger,
                     occurred_at=occurred_at)
    except StaleInstance:
        db().rollback()
        return _conflict(_case(reference), spec, trigger, form)
    except MissingFields as exc:
        db().rollback()
        loose = form.add_errors(exc.errors)
        return _render_action(_case(reference), spec, trigger, form, form_error="; ".join(loose) or None)
    except InvalidInput as exc:
        db().rollback()
        loose = form.add_errors(exc.errors)
        return _render_action(_case(reference), spec, trigger, form, form_error="; ".join(loose) or None)
    except GuardFailed as exc:
        db().rollback()
        return _render_action(_case(reference), spec, trigger, form,
                              form_error=exc.reason[0].upper() + exc.reason[1:] + ".")
    except (TransitionNotAllowed, NotPermitted, NotAllowed):
        db().rollback()
        abort(403)
    db().commit()
    flash(_done_message(case, spec, trigger), "success")
    return redirect(url_for("case.show", reference=case.reference))


def _done_message(case: Case, spec: WorkflowSpec, trigger: str) -> str:
    """What happened and what comes next, with its date: "Consent and risk recorded. Triage decision due by
    5pm on Monday 7 December 2026." (the soonest running deadline after the action)."""
    said = done_words(trigger, kind_of(spec, trigger), spec.triggers[trigger].label) + "."
    ticking = [d for d in facts.deadlines(db(), case, spec, _calendar(case), now()) if not d.paused]
    if ticking:
        return f"{said} {ticking[0].label} due by {moment_words(ticking[0].due_at)}."
    stage = spec.stages.get(case.stage)
    if stage is not None and stage.final and "closed" not in said:
        return f"{said} The case is closed."
    return said


@bp.get("/<reference>/actions/<trigger>/confirm")
@signed_in
def confirm_stop(reference: str, trigger: str) -> ResponseReturnValue:
    """Before the person's withdrawal or their leaving custody is recorded: what will stop (decision 30)."""
    case = _case(reference)
    rt = runtime()
    spec = rt.engine.spec_of(case.instance)
    trig = spec.triggers.get(trigger)
    if trig is None or not facts.is_stopping(spec, trigger):
        abort(404)
    if not trig.roles & actor_for(me(), case).roles:
        abort(403)
    if case.stage not in trig.sources:
        return _not_at_this_stage(case, spec, trigger)
    running = facts.deadlines(db(), case, spec, _calendar(case), now())
    return render_template("case/confirm_stop.html", title=f"{trig.label}: case {case.reference}", case=case,
                           trigger=trig, running=running, reminders=sum(d.reminders for d in running),
                           moment_words=moment_words,
                           stage_label=spec.stages[case.stage].label if case.stage in spec.stages else case.stage)
