"""The access log's page and its CSV download, for administrators and auditors (one page, both roles).

Read from the query string (GET: nothing changes, so no CSRF), filtered by kind, person, case reference and
UK dates; newest first, 50 a page. Which entries an auditor sees is ``reprisals.access_review``'s rule
(decision 23). The download leaves an ``export`` entry in the log, committed before the file is sent: a
download that could not be logged is not given.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, render_template, request, url_for
from flask.typing import ResponseReturnValue
from govuk_frontend_wtf.wtforms_widgets import GovSelect, GovTextInput
from wtforms import Form, SelectField, StringField
from wtforms.fields.choices import SelectChoice

from reprisals.access_log import KINDS
from reprisals.access_review import (
    COUNT_CAP,
    LONDON,
    LogFilters,
    all_entries,
    can_review,
    failed_sign_ins,
    find_case,
    list_entries,
    people,
    record_export,
    to_csv,
)
from reprisals.errors import InvalidInput
from reprisals.models import Role
from web.context import db, me, now
from web.pagination import govuk_pagination
from web.report import DateParts
from web.security import roles

bp = Blueprint("access_log", __name__)

PAGE_SIZE = 50
FILTER_NAMES = ("kind", "person", "case", "since", "until")
_REFERENCE = re.compile(r"^[A-Z0-9-]{1,20}$")


class LogFilterForm(Form):
    kind = SelectField("What happened", widget=GovSelect(), validate_choice=False)
    person = SelectField("Person", widget=GovSelect(), validate_choice=False,
                         description="Who acted, or who was acted on")
    case = StringField("Case reference", widget=GovTextInput(), description="For example, RPR-2026-0042")
    since = DateParts("From", id="since-day", subject="The start date", description="For example, 27 3 2026",
                      future="The start date must be today or in the past")
    until = DateParts("To", id="until-day", subject="The end date", description="For example, 31 3 2026",
                      future="The end date must be today or in the past")


@dataclass
class Asked:
    form: LogFilterForm
    filters: LogFilters
    errors: list[dict[str, str]] = field(default_factory=list)
    query: list[tuple[str, str]] = field(default_factory=list)  # the filters as given, for links

    @property
    def filtered(self) -> bool:
        return bool(self.query)


def _error(asked: Asked, f: Any, message: str, href: str | None = None) -> None:
    f.errors = [*list(f.errors or []), message]
    asked.errors.append({"text": message, "href": href or f"#{f.id}"})


def _read() -> Asked:
    """The form from the query string and the filters it gives (the valid ones; each refused one has
    its message on its field and in the summary)."""
    viewer = me()
    form = LogFilterForm(request.args)
    form.kind.choices = [SelectChoice("", "Anything"), *(SelectChoice(k, words) for k, words in KINDS.items())]
    form.person.choices = [SelectChoice("", "Anyone"),
                           *(SelectChoice(str(i), label) for i, label in people(db(), viewer))]
    asked = Asked(form, LogFilters())
    values: dict[str, Any] = {}
    kind = (form.kind.data or "").strip()
    if kind:
        if kind in KINDS:
            values["kind"] = kind
        else:
            _error(asked, form.kind, "Select what happened from the list")
    person = (form.person.data or "").strip()
    if person:
        if person in {c.value for c in form.person.choices[1:]}:
            values["person_id"] = int(person)
        else:
            _error(asked, form.person, "Select a person from the list")
    reference = (form.case.data or "").strip().upper()
    if reference:
        if not _REFERENCE.match(reference):
            _error(asked, form.case, "Enter a case reference using only letters, numbers and hyphens, "
                                     "like RPR-2026-0042")
        else:
            try:
                values["case_id"] = find_case(db(), viewer, reference)
                values["case_reference"] = reference
            except InvalidInput as exc:
                _error(asked, form.case, exc.errors["case"])
    dates: dict[str, date] = {}
    for name in ("since", "until"):
        f: DateParts = getattr(form, name)
        try:
            f.pre_validate(form)
        except ValueError as exc:  # wtforms' ValidationError is a ValueError
            _error(asked, f, str(exc))
            continue
        if f.data is not None:
            dates[name] = f.data
    if "since" in dates and "until" in dates and dates["until"] < dates["since"]:
        _error(asked, form.until, "The end date must be the same as or after the start date")
        dates.pop("until")
    asked.filters = LogFilters(since=dates.get("since"), until=dates.get("until"), **values)
    asked.query = [(k, v) for k, v in request.args.items(multi=True) if k in FILTER_NAMES and v.strip()]
    return asked


def _page_number(asked: Asked) -> int:
    raw = request.args.get("page", "").strip()
    if not raw:
        return 1
    if raw.isdigit() and 1 <= int(raw) <= 1_000_000:
        return int(raw)
    asked.errors.append({"text": "Page must be a whole number, 1 or more: the first page is shown",
                         "href": "#results"})
    return 1


def _href(asked: Asked, endpoint: str, page: int | None = None) -> str:
    query = asked.query + ([("page", str(page))] if page else [])
    return url_for(endpoint) + ("?" + urlencode(query) if query else "")


def _pagination(asked: Asked, page: int, pages: int) -> dict[str, Any] | None:
    def href(n: int) -> str:
        return _href(asked, "access_log.index", n) + "#results"

    return govuk_pagination(page, pages, href, "Pages of the access log")


def _render(asked: Asked, status: int = 200) -> ResponseReturnValue:
    viewer = me()
    page = _page_number(asked)
    result = list_entries(db(), viewer, asked.filters, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    pages = max(1, math.ceil(result.total / PAGE_SIZE))
    if page > pages:
        asked.errors.append({"text": f"There is no page {page}: there {'is' if pages == 1 else 'are'} {pages} "
                                     f"page{'' if pages == 1 else 's'}. The first page is shown", "href": "#results"})
        page = 1
        result = list_entries(db(), viewer, asked.filters, limit=PAGE_SIZE)
    first = (page - 1) * PAGE_SIZE + 1
    return render_template(
        "access_log/index.html", title="Access log", filters=asked.form, errors=asked.errors, result=result,
        page=page, pages=pages, first=first, last=first + len(result.rows) - 1, filtered=asked.filtered,
        pagination=_pagination(asked, page, pages), csv_href=_href(asked, "access_log.download"),
        link_cases=viewer.role is Role.AUDITOR, cap=COUNT_CAP,
        failed=failed_sign_ins(db(), now()) if viewer.role is Role.ADMIN and page == 1 else []), status


@bp.get("/access-log")
@roles(Role.ADMIN, Role.AUDITOR)
def index() -> ResponseReturnValue:
    if not can_review(me()):
        abort(403)
    asked = _read()
    return _render(asked, 400 if asked.errors else 200)


@bp.get("/access-log.csv")
@roles(Role.ADMIN, Role.AUDITOR)
def download() -> ResponseReturnValue:
    """The filtered entries as CSV. Refused filters give the page with their messages (400) and no file,
    and leave no entry; otherwise the export entry is committed before the file goes."""
    viewer = me()
    if not can_review(viewer):
        abort(403)
    asked = _read()
    if asked.errors:
        return _render(asked, 400)
    at = now()
    text, count = to_csv(all_entries(db(), viewer, asked.filters))
    record_export(db(), at, viewer, asked.filters, count, client=request.remote_addr)
    db().commit()
    name = f"reprisals-access-log-{at.astimezone(LONDON).date().isoformat()}.csv"
    return Response(text, mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'})
