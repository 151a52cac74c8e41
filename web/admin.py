"""Administration: users (invitations, role and body, activity), establishments, protocol versions,
failed messages. Every route is for administrators; the invitation page is public (its token is the key)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from govuk_frontend_wtf.wtforms_widgets import (
    GovCheckboxInput,
    GovFileInput,
    GovPasswordInput,
    GovSelect,
    GovSubmitInput,
    GovTextArea,
    GovTextInput,
)
from wtforms import BooleanField, PasswordField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, Optional

from notifications.outbox import list_failed
from reprisals import accounts, reference
from reprisals import admin as ops
from reprisals.accounts import tokens_of
from reprisals.confirmations import refused_by
from reprisals.errors import InvalidInput, NotAllowed
from reprisals.messaging import InvitationsUnavailable, local_text
from reprisals.models import Role, User
from reprisals.passwords import MIN_LENGTH
from reprisals.protocol_store import activate_protocol, known_versions, protocol_keys, upload_protocol
from reprisals.readside.lookups import bodies as all_bodies
from reprisals.readside.lookups import establishment_by_id, user_by_id
from reprisals.reference import OPTIONAL_COLUMNS, TYPE_LABELS, ImportRefused
from reprisals.vocabulary import NATION_LABELS
from web.context import db, me, now, runtime
from web.security import public, roles
from workflow.errors import SpecError
from workflow.spec import MAX_SPEC_BYTES, decode_spec

bp = Blueprint("admin", __name__, url_prefix="/admin")
invitation_bp = Blueprint("invitation", __name__)

ROLE_CHOICES = [("", "Select a role"), ("staff", "Staff"), ("lead", "Lead"), ("auditor", "Auditor"),
                ("admin", "Administrator")]


def _options(pairs: list[tuple[str, str]]) -> list[SelectChoice]:
    return [SelectChoice(value, label) for value, label in pairs]


def _label(value: str) -> str:
    return value.replace("_", " ").capitalize()


def _bodies() -> list[SelectChoice]:
    return _options([("", "None (administrators only)")] + [(b.code, f"{b.name} ({b.code})")
                                                            for b in all_bodies(db())])


class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token is posted."""


class InviteForm(FlaskForm):
    name = StringField("Full name", widget=GovTextInput(), validators=[InputRequired("Enter the user's name"),
                                                                         Length(max=200)])
    email = StringField("Email address", widget=GovTextInput(),
                        validators=[InputRequired("Enter the user's email address"), Length(max=320)])
    role = SelectField("Role", widget=GovSelect(), choices=_options(ROLE_CHOICES),
                       validators=[InputRequired("Select a role")])
    body_code = SelectField("Body", widget=GovSelect(), choices=[], validate_choice=False, validators=[Optional()])
    submit = SubmitField("Invite user", widget=GovSubmitInput())


class RoleForm(FlaskForm):
    role = SelectField("Role", widget=GovSelect(), choices=_options(ROLE_CHOICES),
                       validators=[InputRequired("Select a role")])
    body_code = SelectField("Body", widget=GovSelect(), choices=[], validate_choice=False, validators=[Optional()])
    submit = SubmitField("Save role and body", widget=GovSubmitInput())


class EstablishmentForm(FlaskForm):
    name = StringField("Name", widget=GovTextInput(), validators=[InputRequired("Enter the establishment's name"),
                                                                   Length(max=200)])
    type = SelectField("Type", widget=GovSelect(),
                       choices=_options([("", "Select a type")]
                                        + [(t.value, label) for t, label in TYPE_LABELS.items()]),
                       validators=[InputRequired("Select the type of establishment")])
    nation = SelectField("Nation", widget=GovSelect(),
                         choices=_options([("", "Select a nation")]
                                          + [(n.value, label) for n, label in NATION_LABELS.items()]),
                         validators=[InputRequired("Select the nation")])
    operator = StringField("Operator", widget=GovTextInput(),
                           validators=[InputRequired("Enter who runs the establishment"), Length(max=200)])
    address_line_1 = StringField("Address line 1 (optional)", widget=GovTextInput(), validators=[Length(max=200)])
    address_line_2 = StringField("Address line 2 (optional)", widget=GovTextInput(), validators=[Length(max=200)])
    address_line_3 = StringField("Address line 3 (optional)", widget=GovTextInput(), validators=[Length(max=200)])
    town = StringField("Town or city (optional)", widget=GovTextInput(), validators=[Length(max=100)])
    postcode = StringField("Postcode (optional)", widget=GovTextInput(), validators=[Length(max=16)])
    head_of_establishment_title = StringField("Title of the head of establishment (optional)", widget=GovTextInput(),
                                              validators=[Length(max=100)])
    active = BooleanField("Active (cases can be reported against it)", widget=GovCheckboxInput(), default=True)
    submit = SubmitField("Save establishment", widget=GovSubmitInput())


ESTABLISHMENT_TEXT = ("name", "operator", *OPTIONAL_COLUMNS)


class EstablishmentImportForm(FlaskForm):
    file = FileField("Upload a CSV file", widget=GovFileInput())
    update = BooleanField("Update establishments that already exist (matched by name)", widget=GovCheckboxInput())
    submit = SubmitField("Import establishments", widget=GovSubmitInput())


class BodyForm(FlaskForm):
    """Checked by :func:`reprisals.reference.add_body` alone, so every problem is shown at once."""

    code = StringField("Code", widget=GovTextInput())
    name = StringField("Full name", widget=GovTextInput())
    submit = SubmitField("Add body", widget=GovSubmitInput())


class UploadForm(FlaskForm):
    file = FileField("Upload a YAML file", widget=GovFileInput())
    # The size limit is the spec loader's (MAX_SPEC_BYTES), reported like every other problem of the file.
    text = TextAreaField("Or paste the YAML", widget=GovTextArea())
    submit = SubmitField("Check and store", widget=GovSubmitInput())


class InvitationForm(FlaskForm):
    password = PasswordField("Choose a password", widget=GovPasswordInput(),
                             validators=[InputRequired("Enter a password"), Length(max=1000)])
    confirm = PasswordField("Confirm the password", widget=GovPasswordInput(),
                            validators=[InputRequired("Enter the password again"), Length(max=1000)])
    submit = SubmitField("Set password", widget=GovSubmitInput())


def _map_errors(form: FlaskForm, exc: InvalidInput) -> None:
    for field, message in exc.errors.items():
        target = getattr(form, field, None) or form.name
        target.errors = [*list(target.errors or []), message]


# -- index ------------------------------------------------------------------------------------------


@bp.get("/")
@roles(Role.ADMIN)
def index() -> ResponseReturnValue:
    return render_template("admin/index.html", title="Administration")


# -- users ------------------------------------------------------------------------------------------


@bp.route("/users", methods=["GET", "POST"])
@roles(Role.ADMIN)
def users() -> ResponseReturnValue:
    form = InviteForm()
    form.body_code.choices = _bodies()
    status = 200
    if form.is_submitted():
        if form.validate():
            try:
                user = ops.invite_user(db(), me(), form.data, now(), runtime().messenger)
            except InvalidInput as exc:
                db().rollback()
                _map_errors(form, exc)
            except InvitationsUnavailable as exc:
                db().rollback()
                flash(str(exc).capitalize() + ".", "error")
            else:
                db().commit()
                flash(_invited_words(user), "success")
                return redirect(url_for("admin.user", user_id=user.id))
        status = 400
    return render_template("admin/users.html", title="Users", form=form, users=ops.list_users(db()),
                           invited=ops.is_invited, me=me()), status


def _invited_words(user: User) -> str:
    """What the admin is told: the link went to the invitee's address (the admin never sees it)."""
    words = (f"An invitation has been e-mailed to {user.name} at {user.email}. The link in it works once, for "
             f"{ops.INVITATION_LIFETIME.days} days.")
    if user.pending:
        words += f" A lead of {user.body_code} must confirm the account before it can see any case."
    return words


def _user_or_404(user_id: int) -> User:
    user = user_by_id(db(), user_id)
    if user is None:
        abort(404)
    return user


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
@roles(Role.ADMIN)
def user(user_id: int) -> ResponseReturnValue:
    target = _user_or_404(user_id)
    form = RoleForm(data={"role": target.role.value, "body_code": target.body_code or ""})
    form.body_code.choices = _bodies()
    status = 200
    if form.is_submitted():
        if form.validate():
            try:
                ops.change_role(db(), me(), target, form.role.data, form.body_code.data, now(),
                                runtime().messenger)
            except InvalidInput as exc:
                db().rollback()
                _map_errors(form, exc)
            else:
                db().commit()
                flash(f"{target.name} is now {_label(target.role.value).lower()}"
                      + (f" of {target.body_code}" if target.body_code else "") + "."
                      + (f" A lead of {target.body_code} must confirm the account before it can see any case."
                         if target.pending else ""), "success")
                return redirect(url_for("admin.user", user_id=target.id))
        status = 400
    return render_template("admin/user.html", title=f"User: {target.name}", form=form, target=target,
                           invited=ops.is_invited(target), me=me(), tokens=tokens_of(db(), target),
                           refused_by=refused_by(db(), target) if target.refused_at else None,
                           local_text=local_text), status


@bp.post("/users/<int:user_id>/tokens/<int:token_id>/revoke")
@roles(Role.ADMIN)
def revoke_token(user_id: int, token_id: int) -> ResponseReturnValue:
    target = _user_or_404(user_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        row = accounts.revoke_token(db(), token_id, me(), now())
    except NotAllowed:
        abort(404)
    if row.user_id != target.id:  # another user's token under this user's address
        db().rollback()
        abort(404)
    db().commit()
    flash(f"{target.name}’s token “{row.name}” has been revoked.", "success")  # noqa: RUF001
    return redirect(url_for("admin.user", user_id=target.id) + "#tokens")


@bp.post("/users/<int:user_id>/active")
@roles(Role.ADMIN)
def set_active(user_id: int) -> ResponseReturnValue:
    target = _user_or_404(user_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    activate = not target.active
    try:
        ops.set_active(db(), me(), target, activate, now(), runtime().messenger, client=request.remote_addr)
    except NotAllowed as exc:
        db().rollback()
        flash(str(exc).capitalize() + ".", "info")
        return redirect(url_for("admin.user", user_id=target.id))
    db().commit()
    flash(f"{target.name} has been {'reactivated' if activate else 'deactivated and signed out'}."
          + (f" A lead of {target.body_code} must confirm the account before it can see any case."
             if activate and target.pending else ""), "success")
    return redirect(url_for("admin.user", user_id=target.id))


@bp.post("/users/<int:user_id>/invitation")
@roles(Role.ADMIN)
def reinvite(user_id: int) -> ResponseReturnValue:
    target = _user_or_404(user_id)
    if not ActionForm().validate_on_submit() or not ops.is_invited(target):
        abort(400)
    try:
        ops.new_invitation(db(), me(), target, now(), runtime().messenger)
    except InvitationsUnavailable as exc:
        db().rollback()
        flash(str(exc).capitalize() + ".", "error")
        return redirect(url_for("admin.user", user_id=target.id))
    db().commit()
    flash(_invited_words(target).replace("An invitation has", "A new invitation has")
          + " Earlier links no longer work.", "success")
    return redirect(url_for("admin.user", user_id=target.id))


@invitation_bp.route("/invitation/<token>", methods=["GET", "POST"])
@public
def accept(token: str) -> ResponseReturnValue:
    invitation = ops.open_invitation(db(), token, now())
    if invitation is None:
        return render_template("errors/error.html", title="This invitation link does not work",
                               message="It may have been used already, have expired (links last 7 days) or have "
                                       "been replaced by a newer one. Ask your administrator for a new link."), 404
    form = InvitationForm()
    status = 200
    if form.is_submitted():
        if form.validate():
            try:
                ops.accept_invitation(db(), token, form.password.data or "", form.confirm.data or "", now())
            except InvalidInput as exc:
                db().rollback()
                _map_errors(form, exc)
            else:
                db().commit()
                flash("Your password has been set. Sign in with your email address and new password.", "success")
                return redirect(url_for("auth.sign_in"))
        status = 400
    return render_template("admin/invitation.html", title="Set your password", form=form,
                           invitee=invitation.user, min_length=MIN_LENGTH), status


# -- establishments ----------------------------------------------------------------------------------


@bp.route("/establishments", methods=["GET", "POST"])
@roles(Role.ADMIN)
def establishments() -> ResponseReturnValue:
    form = EstablishmentForm()
    status = 200
    if form.is_submitted():
        if form.validate():
            try:
                row = ops.create_establishment(db(), me(), form.data)
            except InvalidInput as exc:
                db().rollback()
                _map_errors(form, exc)
            else:
                db().commit()
                flash(f"{row.name} has been added.", "success")
                return redirect(url_for("admin.establishments"))
        status = 400
    return render_template("admin/establishments.html", title="Establishments", form=form,
                           rows=reference.list_establishments(db()), types=TYPE_LABELS, nations=NATION_LABELS), status


@bp.route("/establishments/import", methods=["GET", "POST"])
@roles(Role.ADMIN)
def import_establishments() -> ResponseReturnValue:
    """All or nothing: every problem of the file is in the error summary, with its line; govuk-frontend-wtf's
    summary shows one error per field, so this page builds its own (as the protocols page does)."""
    form = EstablishmentImportForm()
    errors: list[dict[str, str]] = []
    if form.is_submitted():
        upload = form.file.data
        if not form.validate():
            errors = [{"text": m, "href": f"#{name}"} for name, ms in form.errors.items() for m in ms]
        elif upload is None or not getattr(upload, "filename", None):
            errors = [{"text": "Select a CSV file", "href": "#file"}]
        else:
            try:
                result = reference.import_establishments(db(), me(), upload.read(), update=bool(form.update.data))
            except ImportRefused as exc:
                db().rollback()
                errors = [{"text": _import_problem(p), "href": "#file"} for p in exc.problems]
            else:
                db().commit()
                flash(f"Establishments imported: {result.added} added, {result.updated} updated, "
                      f"{result.unchanged} unchanged.", "success")
                return redirect(url_for("admin.establishments"))
    title = ("Error: " if errors else "") + "Import establishments from a CSV file"
    return render_template("admin/establishments_import.html", title=title, import_form=form, errors=errors,
                           columns=reference.COLUMNS, types=TYPE_LABELS, nations=NATION_LABELS), 400 if errors else 200


def _import_problem(problem: reference.RowProblem) -> str:
    where = f"Line {problem.line}: " if problem.line is not None else ""
    message = problem.message[0].upper() + problem.message[1:] if not where else problem.message
    hint = " (select “Update establishments that already exist” to change it)" if problem.exists else ""
    return where + message + hint


@bp.route("/establishments/<int:establishment_id>", methods=["GET", "POST"])
@roles(Role.ADMIN)
def establishment(establishment_id: int) -> ResponseReturnValue:
    row = establishment_by_id(db(), establishment_id)
    if row is None:
        abort(404)
    form = EstablishmentForm(data={"type": row.type.value, "nation": row.nation.value, "active": row.active,
                                   **{name: getattr(row, name) or "" for name in ESTABLISHMENT_TEXT}})
    status = 200
    if form.is_submitted():
        if form.validate():
            try:
                ops.update_establishment(db(), me(), row, form.data)
            except InvalidInput as exc:
                db().rollback()
                _map_errors(form, exc)
            else:
                db().commit()
                flash(f"{row.name} has been saved.", "success")
                return redirect(url_for("admin.establishments"))
        status = 400
    return render_template("admin/establishment.html", title=f"Edit establishment: {row.name}", form=form,
                           row=row), status


# -- bodies -------------------------------------------------------------------------------------------


@bp.route("/bodies", methods=["GET", "POST"])
@roles(Role.ADMIN)
def bodies() -> ResponseReturnValue:
    form = BodyForm()
    status = 200
    if form.is_submitted():
        if form.validate():
            try:
                body = reference.add_body(db(), me(), form.data)
            except InvalidInput as exc:
                db().rollback()
                _map_errors(form, exc)
            else:
                db().commit()
                flash(f"{body.name} ({body.code}) has been added. Users can now belong to it.", "success")
                return redirect(url_for("admin.bodies"))
        status = 400
    return render_template("admin/bodies.html", title="Bodies", form=form, rows=reference.list_bodies(db())), status


# -- protocol versions --------------------------------------------------------------------------------


@bp.route("/protocols", methods=["GET", "POST"])
@roles(Role.ADMIN)
def protocols() -> ResponseReturnValue:
    """Every problem of an upload is listed with its path (``stages.x.deadlines[0].due: ...``) in the
    error summary. govuk-frontend-wtf's summary shows one error per field, so this page builds its own
    (the form is passed as ``upload_form``)."""
    form = UploadForm()
    status = 200
    errors: list[dict[str, str]] = []
    if form.is_submitted():
        text = ""
        if not form.validate():
            errors = [{"text": m, "href": f"#{name}"} for name, ms in form.errors.items() for m in ms]
        else:
            upload = form.file.data
            if upload is not None and bool(getattr(upload, "filename", None)):
                try:
                    text = decode_spec(upload.read(MAX_SPEC_BYTES + 1), "<upload>")
                except SpecError as exc:
                    errors = [{"text": exc.problems[0].message[:1].upper() + exc.problems[0].message[1:],
                               "href": "#file"}]
            else:
                text = form.text.data or ""
            if not errors and not text.strip():
                errors = [{"text": "Upload a YAML file or paste the YAML", "href": "#text"}]
        if not errors:
            try:
                row = upload_protocol(db(), runtime().engine, me(), text, now(), client=request.remote_addr)
            except SpecError as exc:
                db().rollback()
                errors = [{"text": f"{p.path}: {p.message}" if p.path else p.message[:1].upper() + p.message[1:],
                           "href": "#text"} for p in exc.problems]
            else:
                db().commit()
                flash(f"{row.key} version {row.version} is valid and has been stored. It is not active "
                      "yet: activate it for new cases to use it.", "success")
                return redirect(url_for("admin.protocols"))
        status = 400
    versions = {key: known_versions(db(), runtime().engine, key) for key in protocol_keys(db())}
    return render_template("admin/protocols.html", title=("Error: " if errors else "") + "Protocol versions",
                           upload_form=form, versions=versions, errors=errors, local_text=local_text), status


@bp.post("/protocols/<key>/<int:version>/activate")
@roles(Role.ADMIN)
def activate(key: str, version: int) -> ResponseReturnValue:
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        activate_protocol(db(), runtime().engine, me(), key, version, now(), client=request.remote_addr)
    except InvalidInput:
        db().rollback()
        abort(404)
    db().commit()
    flash(f"New {key} cases now use version {version}. Cases already open keep their version.", "success")
    return redirect(url_for("admin.protocols"))


# -- failed messages -------------------------------------------------------------------------------------


@bp.get("/failed-messages")
@roles(Role.ADMIN)
def failed_messages() -> ResponseReturnValue:
    return render_template("admin/failed_messages.html", title="Failed messages", rows=list_failed(db()),
                           local_text=local_text)
