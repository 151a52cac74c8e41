"""Sign in and sign out. Sessions live on the server (reprisals.accounts); the cookie only names one."""

from __future__ import annotations

from flask import Blueprint, flash, make_response, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import GovPasswordInput, GovSubmitInput, GovTextInput
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import InputRequired, Length

from reprisals.accounts import Throttled, end_session
from reprisals.accounts import sign_in as check_password
from reprisals.two_factor import is_enrolled
from web.context import Principal, db, now, runtime
from web.security import public, safe_next, second_step_page

bp = Blueprint("auth", __name__)


class SignInForm(FlaskForm):
    email = StringField("Email address", widget=GovTextInput(),
                        validators=[InputRequired("Enter your email address"), Length(max=320)])
    password = PasswordField("Password", widget=GovPasswordInput(),
                             validators=[InputRequired("Enter your password"), Length(max=1000)])
    submit = SubmitField("Sign in", widget=GovSubmitInput())


class SignOutForm(FlaskForm):
    submit = SubmitField("Sign out", widget=GovSubmitInput())


def _client() -> str:
    # The direct peer; behind REPRISALS_TRUSTED_PROXIES proxies, ProxyFix (web/app.py) has put there the
    # address the outermost trusted proxy saw. A client's own X-Forwarded-For is never read.
    return request.remote_addr or "unknown"


@bp.route("/sign-in", methods=["GET", "POST"])
@public
def sign_in() -> ResponseReturnValue:
    target = safe_next(request.args.get("next"))
    if current_user.is_authenticated:
        return redirect(target or url_for("home.index"))
    form = SignInForm()
    if form.validate_on_submit():
        try:
            production = runtime().settings.is_production
            signed = check_password(db(), form.email.data or "", form.password.data or "", _client(), now(),
                                    messenger=runtime().messenger,
                                    second_step=lambda user: production or is_enrolled(db(), user))
        except Throttled as exc:
            form.email.errors = [str(exc)]
            response = make_response(render_template("auth/sign_in.html", form=form), 429)
            response.headers["Retry-After"] = str(exc.retry_after)
            db().commit()  # a refusal from a new address is counted and logged; a plain wait wrote nothing
            return response
        db().commit()  # the session row, or the recorded failure
        if signed is None:
            form.email.errors = ["Enter a correct email address and password"]
            return render_template("auth/sign_in.html", form=form), 200
        session.clear()  # a fresh session: nothing from before sign-in carries over
        login_user(Principal(signed.session, signed.token), remember=False)
        return redirect(target or url_for("home.index"))
    return render_template("auth/sign_in.html", form=form)


@bp.post("/sign-out")
@second_step_page  # a session that has given only its password can end itself too
def sign_out() -> ResponseReturnValue:
    form = SignOutForm()
    if form.validate_on_submit():
        end_session(db(), current_user.token, now(), client=_client())
        db().commit()
        logout_user()
        session.clear()
        flash("You have signed out.", "success")
    return redirect(url_for("auth.sign_in"))
