"""The case list (reporting a concern is web/report.py; the case page is web/case_page.py).

It reads through ``reprisals.readside.case_list`` (the same function as ``GET /api/cases``) and shows the
filters in the MoJ filter pattern: a panel that collapses (open without JavaScript), the selected filters as
tags that remove themselves, and "Clear filters".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flask import Blueprint, render_template, request, url_for
from flask.typing import ResponseReturnValue
from govuk_frontend_wtf.wtforms_widgets import GovSelect, GovTextInput
from wtforms import Form, SelectField, StringField
from wtforms.fields.choices import SelectChoice

from reprisals.models import Role
from reprisals.readside.case_list import (
    FILTERS,
    SORTS,
    check_filters,
    filter_options,
    list_cases,
    selected,
)
from web.context import db, me, now, runtime
from web.pagination import govuk_pagination
from web.security import roles

bp = Blueprint("cases", __name__, url_prefix="/cases")


def options(pairs: Iterable[tuple[Any, str]]) -> list[SelectChoice]:
    return [SelectChoice(str(value), label) for value, label in pairs]


class FilterForm(Form):
    """The list's filters, read from the query string (GET: nothing changes, so no CSRF)."""

    q = StringField("Case reference", widget=GovTextInput(),
                    description="All or the start of a reference, for example RPR-2025-0012")
    stage = SelectField("Stage", widget=GovSelect(), validate_choice=False)
    risk = SelectField("Risk", widget=GovSelect(), validate_choice=False)
    overdue = SelectField("Overdue", widget=GovSelect(), validate_choice=False)
    due = SelectField("Due", widget=GovSelect(), validate_choice=False)
    assigned = SelectField("Assigned to", widget=GovSelect(), validate_choice=False)
    body = SelectField("Owning body", widget=GovSelect(), validate_choice=False)
    nation = SelectField("Nation", widget=GovSelect(), validate_choice=False)
    establishment = SelectField("Establishment", widget=GovSelect(), validate_choice=False)
    sort = SelectField("Sort by", widget=GovSelect(), validate_choice=False)


def _href(values: Mapping[str, str], **change: Any) -> str:
    args: dict[str, Any] = {k: v for k, v in {**values, **change}.items() if v is not None}
    return url_for("cases.index", **args)


@bp.get("/")
@roles(Role.LEAD, Role.STAFF, Role.AUDITOR)
def index() -> ResponseReturnValue:
    viewer, at, engine = me(), now(), runtime().engine
    offer = filter_options(db(), engine, viewer)
    checked = check_filters(offer, request.args)
    form = FilterForm(request.args)
    shown = [name for name in (*FILTERS, "sort") if offer.offered(name)]
    for name in shown:
        if name == "q":
            continue
        f: SelectField = getattr(form, name)
        any_ = [] if name == "sort" else [("", "Any")]
        f.choices = options(any_ + offer.choices[name])
    errors: list[dict[str, str]] = []
    for name, message in checked.errors.items():
        getattr(form, name).errors = [message]
        if name != "q":
            getattr(form, name).data = ""
        errors.append({"text": message, "href": f"#{getattr(form, name).id}" if name in shown else "#results"})
    raw_page = request.args.get("page", "").strip()
    page = 1
    if raw_page:
        if raw_page.isdigit() and 1 <= int(raw_page) <= 1_000_000:
            page = int(raw_page)
        else:
            errors.append({"text": "Page must be a whole number, 1 or more: the first page is shown",
                           "href": "#results"})
    listed = list_cases(db(), engine, viewer, checked.filters, at, page=page)
    if page > listed.pages:
        errors.append({"text": f"There is no page {page}: there {'is' if listed.pages == 1 else 'are'} "
                               f"{listed.pages} page{'' if listed.pages == 1 else 's'}. The first page is shown",
                       "href": "#results"})
        listed = list_cases(db(), engine, viewer, checked.filters, at, page=1)
    values = checked.values
    tags = [{"heading": t.heading, "label": t.label, "href": _href(values, **{t.name: None})}
            for t in selected(offer, values)]
    pagination = govuk_pagination(listed.page, listed.pages, lambda n: _href(values, page=n) + "#results",
                                  "Pages of cases")
    return render_template(
        "cases/index.html", title="Cases", filters=form, shown=shown, errors=errors, listed=listed,
        cap=listed.cap, tags=tags, filtered=checked.filters.narrowed, sort_label=SORTS[checked.filters.sort],
        pagination=pagination)
