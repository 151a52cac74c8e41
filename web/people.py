"""The person behind a case, for the owning body's leads: correct a typo in who the person is (the pseudonym,
and every case linked to it, stay), and confirm or dismiss "possibly the same person" (reprisals.pseudonyms).

Identity is shown on the correction form only inside the lead's unlock window (a ``viewed_sensitive``
access-log entry, as on the case page); nothing identifying goes into a URL, a flash message or a title.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import GovSubmitInput, GovTextArea
from wtforms import SubmitField, TextAreaField

from reprisals.access import is_owning_lead
from reprisals.errors import CaseNotFound, InvalidInput, NotAllowed
from reprisals.pseudonyms import decide_match
from reprisals.sensitive import read_sensitive
from reprisals.services import correct_identity, get_case
from web.context import db, me, now, runtime
from web.report import PersonStep, _max_length, _required
from web.security import signed_in
from workflow.errors import StaleInstance

bp = Blueprint("people", __name__, url_prefix="/cases")


class CorrectIdentityForm(PersonStep):
    reason = TextAreaField("Why are you correcting it?", widget=GovTextArea(),
                           description="For example, the name was misspelt when the concern was recorded. Your "
                                       "reason is recorded in the case history with your name.",
                           validators=[_required("Enter why you are correcting who the person is"),
                                       _max_length(500, "The reason must be 500 characters or fewer")])
    submit = SubmitField("Save the correction", widget=GovSubmitInput())


class MatchForm(FlaskForm):
    confirm = SubmitField("Yes, the same person", widget=GovSubmitInput())
    dismiss = SubmitField("No, not the same person", widget=GovSubmitInput())


@bp.route("/<reference>/identity/correct", methods=["GET", "POST"])
@signed_in
def correct(reference: str) -> ResponseReturnValue:
    case = get_case(db(), me(), reference)
    if not is_owning_lead(me(), case):
        abort(403)
    rt = runtime()
    view = read_sensitive(db(), rt.cipher, me(), case, now(), via="web", what="identity correction",
                          client=request.remote_addr)
    if not view.unlocked or view.identity is None:
        flash("Give a reason to see who the person is first: then you can correct it.", "info")
        return redirect(url_for("case.identity", reference=case.reference))
    db().commit()  # the view of the identity on this form is logged whatever happens next
    form = CorrectIdentityForm()
    form_error = None
    if request.method == "GET":
        form.detainee_name.data = view.identity.name
        form.detainee_number.data = view.identity.number or ""
        if view.identity.date_of_birth:
            year, month, day = view.identity.date_of_birth.split("-")
            form.detainee_date_of_birth.raw_data = [str(int(day)), str(int(month)), year]
    elif form.validate_on_submit():
        dob = form.detainee_date_of_birth.data
        try:
            changed = correct_identity(db(), rt.engine, rt.cipher, me(), case, {
                "detainee_name": form.detainee_name.data or "", "detainee_number": form.detainee_number.data or "",
                "detainee_date_of_birth": dob.isoformat() if dob else "", "reason": form.reason.data or ""}, now())
        except InvalidInput as exc:
            db().rollback()
            for name, problem in exc.errors.items():
                target = form._fields.get(name, form.reason)
                target.errors = [_problem_words(name, problem)]
        except StaleInstance:
            db().rollback()
            form_error = ("This case was changed by someone else while you were working. Check the details and "
                          "try again.")
        except (NotAllowed, CaseNotFound):
            db().rollback()
            abort(403)
        else:
            db().commit()
            flash(f"Corrected the {' and '.join(changed)}. The person keeps their pseudonym.", "success")
            return redirect(url_for("case.show", reference=case.reference) + "#person")
    return render_template("case/correct_identity.html", title=f"Correct who the person is: case {case.reference}",
                           case=case, form=form, form_error=form_error), 200 if request.method == "GET" or \
        not form.errors else 400


def _problem_words(name: str, problem: str) -> str:
    subject = {"detainee_name": "The name", "detainee_number": "The prison number",
               "detainee_date_of_birth": "The date of birth", "reason": "The reason"}.get(name, "The answer")
    if name == "detainee_name" and problem.startswith("is as recorded"):
        return "Change the name, the prison number or the date of birth: they are as recorded already"
    return f"{subject} {problem}"


@bp.post("/<reference>/people/<int:match_id>")
@signed_in
def decide(reference: str, match_id: int) -> ResponseReturnValue:
    case = get_case(db(), me(), reference)
    if not is_owning_lead(me(), case):
        abort(403)
    form = MatchForm()
    if not form.validate_on_submit() or not (form.confirm.data or form.dismiss.data):
        abort(400)
    try:
        other = decide_match(db(), runtime().engine, me(), case, match_id, bool(form.confirm.data), now())
    except CaseNotFound:
        db().rollback()
        abort(404)
    except NotAllowed as exc:
        db().rollback()
        flash(str(exc).capitalize() + ".", "info")
        return redirect(url_for("case.show", reference=case.reference) + "#person")
    except StaleInstance:
        db().rollback()
        flash("This case was changed by someone else while you were working. Check and try again.", "info")
        return redirect(url_for("case.show", reference=case.reference) + "#person")
    db().commit()
    flash(f"Recorded: {case.reference} and {other.reference} are {'' if form.confirm.data else 'not '}the same "
          "person.", "success")
    return redirect(url_for("case.show", reference=case.reference) + "#person")
