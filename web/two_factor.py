"""Two-factor sign-in pages: the second step after the password (a code from the app, or a recovery
code), setting it up (a QR code drawn as inline SVG, the secret as text), new recovery codes, and the
two-person reset of a lost device (an admin asks, a lead of the member's body approves).

The domain is reprisals.two_factor; the permission hook (web/security.py) sends a session that has
given only its password here (``second_step_page`` routes are the only ones it may reach).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import segno
from flask import Blueprint, abort, flash, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import GovSubmitInput, GovTextInput
from markupsafe import Markup
from wtforms import StringField, SubmitField
from wtforms.validators import InputRequired, Length

from reprisals import two_factor as tf
from reprisals.accounts import WebSession, signed_in_from
from reprisals.errors import NotAllowed
from reprisals.messaging import local_text
from reprisals.models import Role, User
from reprisals.readside.lookups import user_by_id
from web.context import db, me, now, runtime
from web.security import roles, safe_next, second_step_page, signed_in

bp = Blueprint("two_factor", __name__)


class CodeForm(FlaskForm):
    code = StringField("Code from your app", widget=GovTextInput(),
                       validators=[InputRequired("Enter the 6-digit code from your app"),
                                   Length(max=20, message="Enter the 6-digit code from your app")])
    submit = SubmitField("Continue", widget=GovSubmitInput())


class RecoveryForm(FlaskForm):
    code = StringField("Recovery code", widget=GovTextInput(),
                       validators=[InputRequired("Enter one of your recovery codes"),
                                   Length(max=40, message="Enter one of your recovery codes, for example "
                                                          "ABCD-EFGH-JKMN-PQRS")])
    submit = SubmitField("Continue", widget=GovSubmitInput())


class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token is posted."""


def _client() -> str:
    return request.remote_addr or "unknown"


def _web_session() -> WebSession:
    ws: WebSession = current_user.web_session
    return ws


def _next() -> str | None:
    return safe_next(request.args.get("next"))


def _onward() -> str:
    return _next() or url_for("home.index")


def _refused(template: str, form: FlaskForm, exc: Exception, status: int, **context: object) -> ResponseReturnValue:
    form.code.errors = [str(exc)]
    response = make_response(render_template(template, form=form, **context), status)
    if isinstance(exc, tf.TooManyWrongCodes):
        response.headers["Retry-After"] = str(exc.seconds)
    return response


def qr_svg(uri: str) -> Markup:
    """The otpauth URI as an inline SVG QR code: presentation attributes only (no style attribute, no
    script), so the page's CSP (no 'unsafe-inline') allows it."""
    svg = segno.make(uri, error="m").svg_inline(scale=4, dark="#0b0c0c", light="#ffffff", svgclass="app-qr-code",
                                              lineclass=None, omitsize=False)
    labelled = svg.replace("<svg ", '<svg role="img" aria-label="QR code to scan with your authenticator app" '
                                    'focusable="false" ', 1)
    return Markup(labelled)  # noqa: S704 (segno's own markup, built from our URI; no user text in it)


def _grouped(secret: str) -> str:
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


# -- the second step ---------------------------------------------------------------------------------------


@bp.route("/sign-in/code", methods=["GET", "POST"])
@second_step_page
def code() -> ResponseReturnValue:
    step = current_user.second_step_due
    if step is None:
        return redirect(_onward())
    if step == "enrol":
        return redirect(url_for(".enrol", next=_next()))
    form = CodeForm()
    context = {"title": "Enter the code from your app", "next": _next()}
    if form.validate_on_submit():
        try:
            tf.verify_code(db(), runtime().cipher, _web_session(), form.code.data or "", now())
            signed_in_from(db(), _web_session().user, _client(), now())  # the address is now one it signs in from
        except tf.TooManyWrongCodes as exc:
            db().rollback()
            return _refused("two_factor/code.html", form, exc, 429, **context)
        except tf.WrongCode as exc:
            db().commit()  # the wrong code is counted
            return _refused("two_factor/code.html", form, exc, 400, **context)
        db().commit()
        return redirect(_onward())
    return render_template("two_factor/code.html", form=form, **context), 400 if form.errors else 200


@bp.route("/sign-in/recovery-code", methods=["GET", "POST"])
@second_step_page
def recovery() -> ResponseReturnValue:
    step = current_user.second_step_due
    if step is None:
        return redirect(_onward())
    if step == "enrol":
        return redirect(url_for(".enrol", next=_next()))
    form = RecoveryForm()
    context = {"title": "Enter a recovery code", "next": _next()}
    if form.validate_on_submit():
        try:
            left = tf.use_recovery_code(db(), _web_session(), form.code.data or "", now(), client=_client())
            signed_in_from(db(), _web_session().user, _client(), now())  # the address is now one it signs in from
        except tf.TooManyWrongCodes as exc:
            db().rollback()
            return _refused("two_factor/recovery.html", form, exc, 429, **context)
        except tf.WrongCode as exc:
            db().commit()
            return _refused("two_factor/recovery.html", form, exc, 400, **context)
        db().commit()
        advice = (" Make new recovery codes on your account page." if left <= 3 else "")
        flash(f"You signed in with a recovery code. It will not work again: you have {left} left.{advice}", "info")
        return redirect(_onward())
    return render_template("two_factor/recovery.html", form=form, **context), 400 if form.errors else 200


# -- setting it up --------------------------------------------------------------------------------------


@bp.route("/two-factor/set-up", methods=["GET", "POST"])
@second_step_page
def enrol() -> ResponseReturnValue:
    ws = _web_session()
    user = ws.user
    if tf.is_enrolled(db(), user):
        if current_user.second_step_due == "code":
            return redirect(url_for(".code", next=_next()))
        flash("Two-factor sign-in is set up already for your account.", "info")
        return redirect(url_for("account.index") + "#two-factor")
    enrolment = tf.begin_enrolment(db(), runtime().cipher, user, now())
    form = CodeForm()
    context = {"title": "Set up two-factor sign-in", "next": _next(), "secret": _grouped(enrolment.secret),
               "qr": qr_svg(enrolment.uri), "required": runtime().settings.is_production}
    if form.validate_on_submit():
        try:
            codes = tf.confirm_enrolment(db(), runtime().cipher, ws, form.code.data or "", now(), client=_client())
            signed_in_from(db(), _web_session().user, _client(), now())  # the address is now one it signs in from
        except tf.TooManyWrongCodes as exc:
            db().rollback()
            return _refused("two_factor/enrol.html", form, exc, 429, **context)
        except tf.WrongCode as exc:
            db().commit()  # the secret shown stays the same, and the wrong code is counted
            return _refused("two_factor/enrol.html", form, exc, 400, **context)
        page = render_template("two_factor/recovery_codes.html", title="Two-factor sign-in is set up", codes=codes,
                               onward=_onward(), first=True)
        db().commit()
        current_user.second_step_done()
        return page
    db().commit()  # the secret being set up, so that a reload after scanning shows the same one
    return render_template("two_factor/enrol.html", form=form, **context), 400 if form.errors else 200


@bp.post("/account/two-factor/recovery-codes")
@signed_in
def renew_codes() -> ResponseReturnValue:
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        codes = tf.renew_recovery_codes(db(), _web_session(), now(), client=_client())
    except NotAllowed as exc:
        db().rollback()
        flash(str(exc), "info")
        return redirect(url_for("account.index") + "#two-factor")
    page = render_template("two_factor/recovery_codes.html", title="New recovery codes", codes=codes,
                           onward=url_for("account.index") + "#two-factor", first=False)
    db().commit()
    return page


# -- resets: an admin asks, a lead of the body approves ----------------------------------------------------


@bp.post("/admin/users/<int:user_id>/two-factor-reset")
@roles(Role.ADMIN)
def ask_reset(user_id: int) -> ResponseReturnValue:
    target = user_by_id(db(), user_id)
    if target is None:
        abort(404)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        tf.ask_reset(db(), me(), target, now(), client=_client())
    except NotAllowed as exc:
        db().rollback()
        flash(str(exc), "info")
        return redirect(url_for("admin.user", user_id=target.id) + "#two-factor")
    db().commit()
    flash(f"You asked for {target.name}’s two-factor sign-in to be reset. It happens when a lead of "  # noqa: RUF001
          f"{target.body_code} approves.", "success")
    return redirect(url_for("admin.user", user_id=target.id) + "#two-factor")


@bp.get("/two-factor-resets")
@roles(Role.LEAD)
def resets() -> ResponseReturnValue:
    return render_template("two_factor/resets.html", title="Two-factor resets to approve",
                           requests=tf.resets_to_decide(db(), me(), now()), local_text=local_text)


def _decide(reset_id: int, approve: bool) -> ResponseReturnValue:
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        row = (tf.approve_reset if approve else tf.decline_reset)(db(), me(), reset_id, now(), client=_client())
    except NotAllowed as exc:
        db().rollback()
        flash(str(exc), "info")
        return redirect(url_for(".resets"))
    name = row.user.name
    db().commit()
    flash(f"{name}’s two-factor sign-in has been reset: they set it up again when they next sign in."  # noqa: RUF001
          if approve else f"You declined the reset of {name}’s two-factor sign-in.", "success")  # noqa: RUF001
    return redirect(url_for(".resets"))


@bp.post("/two-factor-resets/<int:reset_id>/approve")
@roles(Role.LEAD)
def approve(reset_id: int) -> ResponseReturnValue:
    return _decide(reset_id, True)


@bp.post("/two-factor-resets/<int:reset_id>/decline")
@roles(Role.LEAD)
def decline(reset_id: int) -> ResponseReturnValue:
    return _decide(reset_id, False)


# -- what other pages show (template globals) ------------------------------------------------------------


@dataclass(frozen=True)
class State:
    enrolled: bool
    enrolled_at: datetime | None
    codes_left: int
    pending_reset: tf.TwoFactorReset | None


@bp.app_template_global()
def two_factor_state(user: User) -> State:
    """For the account and admin user pages: whether ``user`` has two-factor sign-in, and any request to
    reset it."""
    cred = tf.credential_of(db(), user)
    enrolled = cred is not None and cred.enrolled_at is not None
    return State(enrolled, cred.enrolled_at if enrolled and cred else None,
                 tf.recovery_codes_left(db(), user) if enrolled else 0, tf.pending_reset(db(), user, now()))


@bp.app_template_global()
def two_factor_resets_waiting() -> int:
    """For a lead's home page: how many requests to reset a member's two-factor sign-in await them."""
    return len(tf.resets_to_decide(db(), me(), now()))


@bp.app_template_global()
def session_has_second_factor() -> bool:
    return bool(current_user.is_authenticated and tf.has_second_factor(_web_session()))
