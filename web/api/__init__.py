"""The JSON API under /api/: bearer tokens, OpenAPI 3.1 at /api/openapi.json, problem+json errors.

Every view is stacked the same way (see :mod:`web.api.cases`)::

    @bp.get("/cases")
    @api_token          # web.security: the route is open to the API's own check
    @bearer             # this module: a live token of an active user, or 401
    @document(...)      # web.api.spec: what the OpenAPI document says about it
    def list_cases(): ...

The cookie session never authenticates here: a request with only a session cookie is a 401.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any, TypeVar, get_args

from flask import Blueprint, Response, g, jsonify, request
from pydantic import BaseModel, ValidationError
from pydantic_core.core_schema import ErrorType
from werkzeug.exceptions import HTTPException

from reprisals.accounts import user_for_token
from reprisals.errors import CaseNotFound, InvalidInput, NotAllowed
from reprisals.models import User
from reprisals.wording import explain, not_a_working_day
from web.context import db, now
from workflow.deadlines import DeadlineError, NotAWorkingDay
from workflow.errors import (
    GuardFailed,
    MissingFields,
    NotPermitted,
    StaleInstance,
    TransitionNotAllowed,
    UnknownTrigger,
)
from workflow.text import shown, storage_problem

bp = Blueprint("api", __name__, url_prefix="/api")

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)
PROBLEM_JSON = "application/problem+json"


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_JSON
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="reprisals"'
    return response


class ApiProblem(Exception):
    """Raised by views and helpers; answered as problem+json."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra


def invalid(errors: Mapping[str, str], detail: str = "Some fields are missing or invalid. Nothing was saved.",
            ) -> ApiProblem:
    return ApiProblem(422, "Invalid input", detail, errors=dict(errors))


# -- authentication ---------------------------------------------------------------------------------


def bearer(view: F) -> F:
    """Only ``Authorization: Bearer <token>``: a live token of an active user. Anything else is 401."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
        secret = secret.strip()
        user = None
        if scheme.lower() == "bearer" and secret and len(secret) <= 200 and "\x00" not in secret:
            user = user_for_token(db(), secret, now())
        if user is None:
            db().rollback()
            return problem(401, "Not signed in",
                           "Send a valid API token as 'Authorization: Bearer <token>'.")
        if db().dirty:
            db().commit()  # last used
        g.api_user = user
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def api_user() -> User:
    user: User = g.api_user
    return user


# -- request bodies and queries ---------------------------------------------------------------------


def _loc(loc: tuple[int | str, ...]) -> str:
    """``sanction_types[0]`` from pydantic's location: the field, then list positions (the names of
    union members that pydantic inserts are dropped)."""
    if not loc:
        return "body"
    out = str(loc[0])
    for part in loc[1:]:
        if isinstance(part, int):
            out += f"[{part}]"
    return out


_LARGEST = 2**31 - 1  # a limit this high is the database's, not one a person needs to be told
_PLAIN = {
    "extra_forbidden": "is not a known field",
    "missing": "is required",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "list_type": "must be a list",
    "string_type": "must be text",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "datetime_type": "must be a date and time, like 2025-04-16T09:30 (UK time unless it has an offset)",
    "datetime_parsing": "must be a date and time, like 2025-04-16T09:30 (UK time unless it has an offset)",
    "datetime_from_date_parsing": "must be a date and time, like 2025-04-16T09:30 (UK time unless it has an offset)",
    "date_type": "must be a real date in the form YYYY-MM-DD",
    "date_parsing": "must be a real date in the form YYYY-MM-DD",
    "date_from_datetime_parsing": "must be a real date in the form YYYY-MM-DD",
    "date_from_datetime_inexact": "must be a real date in the form YYYY-MM-DD",
}


def _message(error: Mapping[str, Any]) -> str:
    """A field error in plain words: never pydantic's wording, a class name or an internal limit."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in _PLAIN:
        return _PLAIN[kind]
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return "choose at least one" if n == 1 else f"must have at least {n} items"
    if kind == "too_long":
        return f"must have {ctx.get('max_length')} items or fewer"
    if kind == "string_too_short":
        n = ctx.get("min_length", 1)
        return "is required" if n == 1 else f"must be at least {n} characters"
    if kind == "string_too_long":
        return f"must be {ctx.get('max_length')} characters or fewer"
    if kind in ("greater_than_equal", "greater_than"):
        limit = ctx.get("ge", ctx.get("gt"))
        return f"must be {limit} or more" if kind == "greater_than_equal" else f"must be more than {limit}"
    if kind in ("less_than_equal", "less_than"):
        limit = ctx.get("le", ctx.get("lt"))
        if isinstance(limit, int) and limit >= _LARGEST:
            return "is too large"
        return f"must be {limit} or less" if kind == "less_than_equal" else f"must be less than {limit}"
    if kind in ("enum", "literal_error"):
        return f"must be one of {ctx.get('expected')}"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        return "is not in the expected form"
    if kind not in _PYDANTIC_TYPES:  # ours (PydanticCustomError in web.api.models): already in plain words
        return str(error["msg"])
    return "is not valid here"


_PYDANTIC_TYPES = frozenset(get_args(ErrorType))


def validation_errors(err: ValidationError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for e in err.errors():
        errors.setdefault(_loc(tuple(e["loc"])), _message(e))
    return errors


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "must not contain NUL characters"
    return storage_problem(text)


def _nul_errors(value: Any, path: str, errors: dict[str, str]) -> None:
    """Text that cannot be stored anywhere — NUL characters (PostgreSQL refuses them), lone surrogates
    (``"\\ud800"`` in JSON), non-characters — is a field error, not a crash; per field, the service
    checks the rest (control characters, blanks)."""
    if isinstance(value, str):
        if problem := _text_problem(value):
            errors[path or "body"] = problem
    elif isinstance(value, dict):
        for k, v in value.items():
            name = f"{path}.{shown(k)}" if path else shown(k)
            if problem := _text_problem(k):
                errors[path or "body"] = f"field names {problem}"
                continue
            _nul_errors(v, name, errors)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _nul_errors(v, f"{path}[{i}]", errors)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_body(model: type[M]) -> M:
    """The request body as ``model``: 415 unless JSON, 400 if malformed, 422 listing each bad field."""
    if request.mimetype != "application/json":
        raise ApiProblem(415, "Unsupported media type", "Send the body as application/json.")
    try:
        text = request.get_data().decode("utf-8")  # strictly: Werkzeug's as_text would put U+FFFD in
    except UnicodeDecodeError:
        raise ApiProblem(400, "Malformed JSON", "The body is not UTF-8 text. Nothing was saved.") from None
    try:
        data = json.loads(text, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise ApiProblem(400, "Malformed JSON", "The body is not valid JSON. Nothing was saved.") from None
    errors: dict[str, str] = {}
    _nul_errors(data, "", errors)
    if errors:
        raise invalid(errors)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise invalid(validation_errors(err)) from None


def query_args(model: type[M]) -> M:
    errors: dict[str, str] = {}
    args = request.args.to_dict(flat=True)
    _nul_errors(args, "", errors)
    if errors:
        raise invalid(errors, "Some query parameters are invalid.")
    try:
        return model.model_validate(args)
    except ValidationError as err:
        raise invalid(validation_errors(err), "Some query parameters are invalid.") from None


# -- errors -----------------------------------------------------------------------------------------


@bp.errorhandler(ApiProblem)
def _api_problem(exc: ApiProblem) -> Response:
    db().rollback()
    return problem(exc.status, exc.title, exc.detail, **exc.extra)


@bp.errorhandler(InvalidInput)
@bp.errorhandler(MissingFields)
def _invalid(exc: InvalidInput | MissingFields) -> Response:
    db().rollback()
    return problem(422, "Invalid input", "Some fields are missing or invalid. Nothing was saved.",
                   errors=dict(exc.errors))


def _in_words(exc: Exception) -> str:
    """The refusal in the domain's words, naming the case the request acted on (set by the route)."""
    return _sentence(explain(exc, **getattr(g, "case_context", {}))) + " Nothing was saved."


def _sentence(text: str) -> str:
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else text + "."


@bp.errorhandler(GuardFailed)
def _guard(exc: GuardFailed) -> Response:
    db().rollback()
    return problem(422, "That cannot be done", _in_words(exc), errors={})


@bp.errorhandler(DeadlineError)  # part: deadlines
def _deadline_refused(exc: DeadlineError) -> Response:
    db().rollback()
    if isinstance(exc, NotAWorkingDay):
        return problem(422, "Invalid input", "Some fields are missing or invalid. Nothing was saved.",
                       errors={"due": not_a_working_day(exc)})
    return problem(422, "That cannot be done", _in_words(exc), errors={})


@bp.errorhandler(NotPermitted)
def _not_permitted(exc: NotPermitted) -> Response:
    db().rollback()
    return problem(403, "You cannot do that", _in_words(exc))


@bp.errorhandler(NotAllowed)
def _not_allowed(_exc: Exception) -> Response:
    db().rollback()
    return problem(403, "You cannot do that", "Your role on this case does not allow this action. Nothing was saved.")


@bp.errorhandler(CaseNotFound)
@bp.errorhandler(UnknownTrigger)
def _not_found(_exc: Exception) -> Response:
    db().rollback()
    return problem(404, "Not found", "There is no such case or action, or you may not see it.")


def _current(instance_id: int) -> tuple[int | None, str | None]:
    from reprisals.readside.lookups import instance_now

    db().rollback()
    return instance_now(db(), instance_id)


@bp.errorhandler(StaleInstance)
def _stale(exc: StaleInstance) -> Response:
    version, stage = _current(exc.instance_id)
    return problem(409, "The case has changed", "Someone changed the case since you read it. Read it again and "
                   "retry with its current version. Nothing was saved.", current_version=version,
                   current_stage=stage)


@bp.errorhandler(TransitionNotAllowed)
def _wrong_stage(exc: TransitionNotAllowed) -> Response:
    db().rollback()
    return problem(409, "Not possible at this stage", _in_words(exc), current_stage=exc.stage)


@bp.errorhandler(HTTPException)
def _http(exc: HTTPException) -> Response:
    db().rollback()
    status = exc.code or 500
    return problem(status, exc.name, exc.description or exc.name)


@bp.after_request
def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


from web.api import cases, establishments, spec, tokens  # noqa: E402,F401  (the routes)
