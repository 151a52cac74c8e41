"""Unmasking with approval (``reprisals.unmasking``, decision 27): an auditor asks to see who the person is, a
lead of the owning body decides, the auditor sees it once.

Nothing identifying goes into a URL (the case's reference and the request's number only), a flash, a title or
an error; the one page that shows the identity is the answer to the POST that records the view, with
``Cache-Control: no-store``, so a reload asks again and is told it was seen.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import GovRadioInput, GovSubmitInput, GovTextArea
from wtforms import SubmitField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length

from reprisals.access import is_owning_lead
from reprisals.errors import InvalidInput, NotAllowed
from reprisals.models import Case, Role
from reprisals.readside.lookups import user_by_id, users_by_id
from reprisals.services import get_case
from reprisals.unmasking import (
    MAX_REASON,
    REQUESTED,
    UnmaskRequest,
    decide_unmask,
    may_request,
    open_requests_for_lead,
    request_reason,
    request_unmask,
    requests_of,
    view_unmasked,
)
from web.case_page import local
from web.context import db, me, now, runtime
from web.forms_dynamic import ChoiceField, Required
from web.security import signed_in

bp = Blueprint("unmask", __name__)


class RequestForm(FlaskForm):
    reason = TextAreaField("Why do you need to see who this person is?", widget=GovTextArea(),
                           description="Your reason is recorded in the case history with your name, and the leads "
                                       "of the body that owns the case see it when they decide.",
                           validators=[Required("Enter why you need to see who this person is"),
                                       Length(max=MAX_REASON, message=f"The reason must be {MAX_REASON} characters "
                                                                      "or fewer")])
    submit = SubmitField("Ask to see who the person is", widget=GovSubmitInput())


class DecideForm(FlaskForm):
    decision = ChoiceField("Do you approve this request?", widget=GovRadioInput(),
                          choices=[SelectChoice("approve", "Approve: they can see who the person is once, within "
                                                           "24 hours"),
                                   SelectChoice("refuse", "Refuse")],
                          validators=[Required("Select whether you approve or refuse the request")])
    reason = TextAreaField("Reason for your decision", widget=GovTextArea(),
                           description="Your reason is recorded in the case history with your name, and the auditor "
                                       "sees it.",
                           validators=[Required("Enter the reason for your decision"),
                                       Length(max=MAX_REASON, message=f"The reason must be {MAX_REASON} characters "
                                                                      "or fewer")])
    submit = SubmitField("Save the decision", widget=GovSubmitInput())


class ViewForm(FlaskForm):
    submit = SubmitField("See who the person is now (once)", widget=GovSubmitInput())


def _case(reference: str) -> Case:
    return get_case(db(), me(), reference)


def _request(case: Case, request_id: int) -> UnmaskRequest:
    row = db().get(UnmaskRequest, request_id)
    if row is None or row.case_id != case.id:
        abort(404)
    return row


def _reason_error(exc: InvalidInput) -> str:
    problem = exc.errors.get("reason", "is required")
    if problem == "is required":
        return "Enter a reason"
    return problem[:1].upper() + problem[1:] if problem.startswith("You ") else f"The reason {problem}"


@bp.route("/cases/<reference>/unmask", methods=["GET", "POST"])
@signed_in
def ask(reference: str) -> ResponseReturnValue:
    case = _case(reference)
    if not may_request(me(), case):
        abort(403)
    form = RequestForm()
    if form.validate_on_submit():
        rt = runtime()
        try:
            request_unmask(db(), rt.engine, me(), case, now(), reason=form.reason.data, via="web",
                           messenger=rt.messenger, client=request.remote_addr)
        except InvalidInput as exc:
            db().rollback()
            form.reason.errors = [_reason_error(exc)]
        else:
            db().commit()
            flash("Your request has been sent to the leads of the body that owns the case. You will be told when "
                  "one of them decides.", "success")
            return redirect(url_for("case.show", reference=case.reference) + "#unmask")
    return render_template("unmask/ask.html", title=f"Ask to see who the person is: case {case.reference}",
                           case=case, form=form)


@bp.route("/cases/<reference>/unmask/<int(min=1, max=2147483647):request_id>/decide", methods=["GET", "POST"])
@signed_in
def decide(reference: str, request_id: int) -> ResponseReturnValue:
    case = _case(reference)
    if not is_owning_lead(me(), case):
        abort(403)
    row = _request(case, request_id)
    requester = user_by_id(db(), row.requested_by_id)
    if row.requested_by_id == me().id:
        abort(403)
    form = DecideForm()
    form_error = None
    if row.status != REQUESTED:
        form_error = "This request has been decided already."
    elif form.validate_on_submit():
        rt = runtime()
        try:
            decide_unmask(db(), rt.engine, me(), case, now(), request_id=row.id,
                          approve=form.decision.data == "approve", reason=form.reason.data, via="web",
                          messenger=rt.messenger, client=request.remote_addr)
        except InvalidInput as exc:
            db().rollback()
            form.reason.errors = [_reason_error(exc)]
        except NotAllowed as exc:
            db().rollback()
            form_error = str(exc)
        else:
            db().commit()
            flash("The request has been approved: the auditor can see who the person is once, within 24 hours."
                  if form.decision.data == "approve" else "The request has been refused.", "success")
            return redirect(url_for("case.show", reference=case.reference) + "#unmask")
    return render_template("unmask/decide.html", title=f"Decide a request to see who the person is: case "
                                                       f"{case.reference}",
                           case=case, form=form, row=row, requester=requester, local=local, form_error=form_error,
                           reason=request_reason(db(), runtime().cipher, case, row)), 409 if form_error else 200


@bp.post("/cases/<reference>/unmask/<int(min=1, max=2147483647):request_id>/view")
@signed_in
def view(reference: str, request_id: int) -> ResponseReturnValue:
    case = _case(reference)
    if not may_request(me(), case):
        abort(403)
    row = _request(case, request_id)
    form = ViewForm()
    if not form.validate_on_submit():
        abort(400)
    rt = runtime()
    try:
        identity = view_unmasked(db(), rt.engine, rt.cipher, me(), case, now(), request_id=row.id, via="web",
                                 client=request.remote_addr)
    except NotAllowed as exc:
        db().rollback()
        page = render_template("unmask/seen.html", title=f"Who the person is: case {case.reference}", case=case,
                               identity=None, problem=str(exc))
        return page, 409, {"Cache-Control": "no-store"}
    page = render_template("unmask/seen.html", title=f"Who the person is: case {case.reference}", case=case,
                           identity=identity, problem=None, local=local, at=now())
    db().commit()
    return page, 200, {"Cache-Control": "no-store"}


@bp.get("/unmask-requests")
@signed_in
def index() -> ResponseReturnValue:
    user = me()
    if user.role not in (Role.LEAD, Role.AUDITOR):
        abort(403)
    pending = open_requests_for_lead(db(), user) if user.role is Role.LEAD else []
    mine = requests_of(db(), user) if user.role is Role.AUDITOR else []
    ids = {r.requested_by_id for r, _ in pending} | {r.decided_by_id for r, _ in mine if r.decided_by_id}
    users = users_by_id(db(), ids)
    return render_template("unmask/index.html", title="Requests to see who the person is", pending=pending,
                           mine=mine, users=users, local=local, at=now(), auditor=user.role is Role.AUDITOR)


@bp.app_template_global()
def unmask_requests_waiting() -> int:
    """For a lead's home page: how many requests to see who the person is wait for the lead's body."""
    return len(open_requests_for_lead(db(), me()))
