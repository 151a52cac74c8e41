"""The user's own account: password, e-mail preference, API tokens."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_user
from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import GovPasswordInput, GovRadioInput, GovSubmitInput, GovTextInput
from wtforms import PasswordField, RadioField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length

from reprisals.accounts import change_password, create_token, revoke_token, start_session, tokens_of
from reprisals.errors import InvalidInput, NotAllowed
from reprisals.messaging import local_text
from reprisals.passwords import MIN_LENGTH
from reprisals.two_factor import has_second_factor
from web.context import Principal, db, me, now
from web.security import signed_in

bp = Blueprint("account", __name__, url_prefix="/account")

class PasswordForm(FlaskForm):
    current_password = PasswordField("Current password", widget=GovPasswordInput(),
                                     validators=[InputRequired("Enter your current password"), Length(max=1000)])
    new_password = PasswordField("New password", widget=GovPasswordInput(),
                                 validators=[InputRequired("Enter a new password"), Length(max=1000)])
    confirm_password = PasswordField("Confirm the new password", widget=GovPasswordInput(),
                                     validators=[InputRequired("Enter the new password again"), Length(max=1000)])
    submit = SubmitField("Change password", widget=GovSubmitInput())

class PreferenceForm(FlaskForm):
    email_notifications = RadioField("Email me about my cases", widget=GovRadioInput(),
                                     choices=[SelectChoice("on", "Yes, email me as well as notifying me here"),
                                              SelectChoice("off", "No, only notify me here")],
                                     validators=[InputRequired("Select whether to get emails")])
    submit = SubmitField("Save preference", widget=GovSubmitInput())

class TokenForm(FlaskForm):
    name = StringField("Token name", widget=GovTextInput(),
                       validators=[InputRequired("Enter a name for the token"),
                                   Length(max=100, message="Token name must be 100 characters or fewer")])
    submit = SubmitField("Create token", widget=GovSubmitInput())

NEEDS_SECOND_FACTOR = ("You can create API tokens only after signing in with two-factor sign-in (a code "
                               "from your app): a token acts as you without that step. Set up two-factor sign-in "
                               "below, or sign out and in again with your code.")

class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token is posted."""

def _page(form: FlaskForm | None = None, status: int = 200, **forms: FlaskForm) -> ResponseReturnValue:
    user = me()
    choice = "on" if user.email_notifications else "off"
    preference = forms.get("preference") or PreferenceForm(formdata=None, email_notifications=choice)
    context = {"password_form": forms.get("password") or PasswordForm(formdata=None),
               "preference_form": preference, "token_form": forms.get("token") or TokenForm(formdata=None),
               "tokens": tokens_of(db(), user), "min_length": MIN_LENGTH, "user": user,
               "local_text": local_text, "second_factor": has_second_factor(current_user.web_session),
               "no_token_reason": NEEDS_SECOND_FACTOR}
    if form is not None:
        context["form"] = form  # the one with errors: base.html shows its error summary
    return render_template("account/index.html", title="Your account", **context), status

@bp.get("/")
@signed_in
def index() -> ResponseReturnValue:
    return _page()

@bp.post("/password")
@signed_in
def password() -> ResponseReturnValue:
    form = PasswordForm()
    if not form.validate_on_submit():
        return _page(form, 400, password=form)
    if form.new_password.data != form.confirm_password.data:
        form.confirm_password.errors = ["The new passwords do not match"]
        return _page(form, 400, password=form)
    user = me()
    try:
        change_password(db(), user, form.current_password.data or "", form.new_password.data or "", now())
    except InvalidInput as exc:
        db().rollback()
        messages = {"current_password": "Your current password is not correct",
                    "new_password": f"Your new password {exc.errors.get('new_password', '')}"}
        for field in exc.errors:
            getattr(form, field).errors = [messages.get(field, exc.errors[field])]
        return _page(form, 400, password=form)
    # Every session of the user ended (other devices are signed out); this one continues in a new one.
    signed = start_session(db(), user, now())
    signed.session.two_factor_at = current_user.web_session.two_factor_at  # it gave its second factor already
    db().commit()
    session.clear()
    login_user(Principal(signed.session, signed.token), remember=False)
    flash("Your password has been changed. You have been signed out everywhere else.", "success")
    return redirect(url_for("account.index"))

@bp.post("/notifications")
@signed_in
def notifications() -> ResponseReturnValue:
    form = PreferenceForm()
    if not form.validate_on_submit():
        return _page(form, 400, preference=form)
    me().email_notifications = form.email_notifications.data == "on"
    db().commit()
    flash("Your email preference has been saved: " + ("you will get emails." if me().email_notifications
                                                     else "you will be notified here only."), "success")
    return redirect(url_for("account.index"))

@bp.post("/tokens")
@signed_in
def new_token() -> ResponseReturnValue:
    form = TokenForm()
    if not form.validate_on_submit():
        return _page(form, 400, token=form)
    if not has_second_factor(current_user.web_session):
        # A token acts as you with no second step: only a session that gave one may make it.
        form.name.errors = [NEEDS_SECOND_FACTOR]
        return _page(form, 403, token=form)
    try:
        row, secret = create_token(db(), me(), form.name.data or "", now(), client=request.remote_addr)
    except InvalidInput as exc:
        db().rollback()
        form.name.errors = [f"Token name: {exc.errors.get('name', 'is not valid')}"]
        return _page(form, 400, token=form)
    db().commit()
    return render_template("account/token_created.html", title="API token created", token=row, secret=secret)

@bp.post("/tokens/<int:token_id>/revoke")
@signed_in
def revoke(token_id: int) -> ResponseReturnValue:
    if not ActionForm().validate_on_submit():
        abort(400)
    user = me()
    try:
        row = revoke_token(db(), token_id, user, now(), client=request.remote_addr)
    except NotAllowed:
        abort(404)
    if row.user_id != user.id:  # an admin revokes others' tokens elsewhere, not from their own account page
        db().rollback()
        abort(404)
    db().commit()
    flash(f"The token “{row.name}” has been revoked.", "success")
    return redirect(url_for("account.index"))
