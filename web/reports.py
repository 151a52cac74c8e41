"""Figures for annual reports: a period, a body, exact counts or counts as they may be published,
each breakdown as a table and a bar chart, and the same as CSV. Auditors see every body; a lead sees
their own body's figures only. Counts only, never a case or a person (``reprisals.reports``)."""

from __future__ import annotations

from datetime import date

from flask import Blueprint, Response, render_template, request
from flask.typing import ResponseReturnValue
from govuk_frontend_wtf.wtforms_widgets import GovRadioInput, GovSelect, GovTextInput
from markupsafe import Markup
from wtforms import Form, RadioField, SelectField, StringField
from wtforms.fields.choices import SelectChoice

from reprisals import access_log
from reprisals.errors import InvalidInput
from reprisals.models import Role, User
from reprisals.readside.lookups import bodies as all_bodies
from reprisals.reports import LONDON, Figures, Period, figures, parse_period, to_csv
from web.charts import bar_chart, chart_id
from web.context import db, me, now
from web.security import roles

bp = Blueprint("reports", __name__, url_prefix="/reports")
ALL = "all"


class ReportForm(Form):
    """Read from the query string (GET: nothing changes, so no CSRF)."""

    period = StringField("Period", widget=GovTextInput(),
                         description="A year (2025), a financial year (2025-26), or two dates "
                                     "(2025-04-01..2025-09-30)")
    body = SelectField("Body", widget=GovSelect(), validate_choice=False)
    counts = RadioField("Counts", widget=GovRadioInput(), default="exact",
                        choices=[SelectChoice("exact", "Exact (not for publication)"),
                                 SelectChoice("publish", "For publication: counts under 5 shown as “fewer than 5”")])


def _current_financial_year(today: date) -> str:
    start = today.year if today.month >= 4 else today.year - 1
    return f"{start}-{(start + 1) % 100:02d}"


def _read(user: User) -> tuple[ReportForm, Period | None, str | None, bool]:
    """The form, and when it is valid the period, the body (None: all) and whether to publish."""
    form = ReportForm(request.args)
    bodies = all_bodies(db())
    if user.role is Role.LEAD:
        own = next((b.name for b in bodies if b.code == user.body_code), user.body_code or "")
        form.body.choices = [SelectChoice(user.body_code or "", own)]
        form.body.data = user.body_code  # a lead's figures are their own body's, whatever was asked
    else:
        form.body.choices = [SelectChoice(ALL, "All bodies"), *(SelectChoice(b.code, b.name) for b in bodies)]
        if form.body.data not in {ALL, *(b.code for b in bodies)}:
            form.body.data = ALL
    if not form.period.data:
        form.period.data = _current_financial_year(now().astimezone(LONDON).date())
    if form.counts.data not in ("exact", "publish"):
        form.counts.data = "exact"
    try:
        period = parse_period(form.period.data)
    except InvalidInput as exc:
        form.period.errors = [f"The period {exc.errors['period']}"]
        return form, None, None, False
    body = None if form.body.data in (None, "", ALL) else form.body.data
    return form, period, body, form.counts.data == "publish"


def _charts(result: Figures, publish: bool) -> dict[str, Markup]:
    charts = {}
    for table in result.tables:
        rows = [(label, None if shown != f"{n:,}" else n, shown) for label, n, shown in table.shown(publish)]
        # Markup: bar_chart escapes every text it is given.
        charts[table.key] = Markup(bar_chart(chart_id(table.key), table.title, rows))  # noqa: S704
    return charts


def _asked() -> tuple[ReportForm, Figures | None, bool]:
    """The form from the query string, and the figures it asks for (None if it is refused)."""
    form, period, body, publish = _read(me())
    return form, (figures(db(), period, body, now=now()) if period is not None else None), publish


def _refused(form: ReportForm) -> ResponseReturnValue:
    return render_template("reports/index.html", title="Figures", form=form, result=None), 400


@bp.get("/")
@roles(Role.AUDITOR, Role.LEAD)
def index() -> ResponseReturnValue:
    form, result, publish = _asked()
    if result is None:
        return _refused(form)
    csv_args = {"period": form.period.data, "body": form.body.data, "counts": form.counts.data}
    return render_template("reports/index.html", title="Figures", form=form, result=result, publish=publish,
                           charts=_charts(result, publish), csv_args=csv_args)


@bp.get("/figures.csv")
@roles(Role.AUDITOR, Role.LEAD)
def download() -> ResponseReturnValue:
    form, result, publish = _asked()
    if result is None:
        return _refused(form)
    period, body = result.period, result.body.code.lower() if result.body else None
    name = f"reprisals-figures-{period.start.isoformat()}-to-{period.end.isoformat()}"
    name += f"-{body}" if body else ""
    name += "-for-publication" if publish else "-exact-not-for-publication"
    text = to_csv(result, publish=publish)
    # The download is an access-log entry, committed before the file goes (no entry, no file).
    access_log.record(db(), now(), "export", actor=me(), client=request.remote_addr,
                      detail={"what": "figures", "period": period.label, "body": result.body.code if result.body else
                              "all", "counts": "for publication" if publish else "exact"})
    db().commit()
    return Response(text, mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
