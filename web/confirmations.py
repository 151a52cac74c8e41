"""A lead's accounts to confirm: the staff and leads of their body that an admin invited or moved, who see
no case until a lead of the body confirms them (``reprisals.confirmations``, decision 22).

Every route is for leads; a pending lead is refused by ``web.security`` (pending accounts pass no role
rule), and an account of another body is a 404, as if it did not exist.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import GovSubmitInput, GovTextArea
from wtforms import SubmitField, TextAreaField
from wtforms.validators import InputRequired, Length

from reprisals import confirmations as ops
from reprisals.errors import InvalidInput, NotAllowed
from reprisals.messaging import local_text
from reprisals.models import Role, User
from web.context import db, me, now
from web.security import roles

bp = Blueprint("confirmations", __name__, url_prefix="/accounts")

ROLE_WORDS = {Role.STAFF: "Staff", Role.LEAD: "Lead"}


class ConfirmForm(FlaskForm):
    """The confirm button: only the CSRF token is posted."""


class RefuseForm(FlaskForm):
    reason = TextAreaField("Why are you refusing this account?", widget=GovTextArea(),
                           validators=[InputRequired("Enter why you are refusing this account (the administrators "
                                                     "will see it)"),
                                       Length(max=ops.MAX_REASON, message=f"The reason must be {ops.MAX_REASON} "
                                                                          "characters or fewer")])
    submit = SubmitField("Refuse the account", widget=GovSubmitInput())


def _pending_or_404(user_id: int) -> User:
    user = ops.get_pending(db(), me(), user_id)
    if user is None:
        abort(404)
    return user


@bp.get("/pending")
@roles(Role.LEAD)
def pending() -> ResponseReturnValue:
    return render_template("confirmations/pending.html", title="Accounts to confirm",
                           rows=ops.list_pending(db(), me()), role_words=ROLE_WORDS, local_text=local_text,
                           confirm_form=ConfirmForm(), body=me().body_code)


@bp.post("/pending/<int:user_id>/confirm")
@roles(Role.LEAD)
def confirm(user_id: int) -> ResponseReturnValue:
    target = _pending_or_404(user_id)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        ops.confirm_account(db(), me(), target, now())
    except NotAllowed as exc:
        db().rollback()
        flash(str(exc).capitalize() + ".", "error")
        return redirect(url_for("confirmations.pending"))
    words = f"{target.name}'s account is confirmed: they can now work on {target.body_code}'s cases as " \
            f"{ROLE_WORDS[target.role].lower()}."
    db().commit()
    flash(words, "success")
    return redirect(url_for("confirmations.pending"))


@bp.route("/pending/<int:user_id>/refuse", methods=["GET", "POST"])
@roles(Role.LEAD)
def refuse(user_id: int) -> ResponseReturnValue:
    target = _pending_or_404(user_id)
    form = RefuseForm()
    status = 200
    if form.is_submitted():
        if form.validate():
            try:
                ops.refuse_account(db(), me(), target, form.reason.data or "", now())
            except InvalidInput as exc:
                db().rollback()
                form.reason.errors = [exc.errors.get("reason", "Enter why you are refusing this account")]
            else:
                words = f"{target.name}'s account is refused and deactivated. The administrators can see why."
                db().commit()
                flash(words, "success")
                return redirect(url_for("confirmations.pending"))
        status = 400
    return render_template("confirmations/refuse.html", title="Refuse an account",
                           form=form, target=target, role_words=ROLE_WORDS), status
