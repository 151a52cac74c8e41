"""The case list and its filters: one function for the page (``/cases/``) and the API (``GET /api/cases``).

``filter_options`` says which filters and values a viewer is offered (none that can only return nothing:
staff see only the cases assigned to them, so they are offered neither owning bodies nor assignees);
``check_filters`` turns what was asked for (strings, from a query string) into ``CaseFilters`` and a message
in the user's words for each value that is not on offer; ``list_cases`` filters, sorts, counts and pages in
SQL. It reads only the columns it shows (never the detainee row): one count, one page of ids, then the page's
rows (``rows.case_rows``), whatever the size.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, nulls_last, select
from sqlalchemy.orm import Session

from reprisals.access import visible_cases
from reprisals.models import Body, Case, Establishment, Nation, Risk, Role, User
from reprisals.protocol import SPEC_KEY
from reprisals.readside.queue import WEEK
from reprisals.readside.rows import CaseRow, case_rows
from reprisals.readside.steps import RUNNING
from reprisals.vocabulary import NATION_LABELS, RISK_LABELS
from workflow.engine import Engine
from workflow.models import DeadlineRow

PAGE_SIZE = 25
COUNT_CAP = 10_000
SORTS = {"received_newest": "Received (newest first)", "received_oldest": "Received (oldest first)",
         "risk": "Risk (most urgent first)", "time_left": "Time left (least first)"}
REFERENCE = re.compile(r"^[A-Z0-9-]{1,20}$")
# The filters that narrow the list (sort and page do not), in the order the page shows them.
FILTERS = ("q", "stage", "risk", "overdue", "due", "assigned", "body", "nation", "establishment")
NAMES = {"q": "Case reference", "stage": "Stage", "risk": "Risk", "overdue": "Overdue", "due": "Due",
         "assigned": "Assigned to", "body": "Owning body", "nation": "Nation", "establishment": "Establishment",
         "sort": "Sort by"}
MESSAGES = {"stage": "Select a stage from the list", "risk": "Select a risk from the list",
            "body": "Select an owning body from the list", "establishment": "Select an establishment from the list",
            "nation": "Select a nation from the list", "overdue": "Select overdue or not overdue",
            "due": "Select when the case is due from the list",
            "assigned": "Select who the case is assigned to from the list",
            "sort": "Select a sort order from the list",
            "q": "Enter a case reference using only letters, numbers and hyphens, like RPR-2025-0012"}


@dataclass(frozen=True)
class CaseFilters:
    """What the list is narrowed to (None: any) and how it is sorted."""

    reference: str | None = None  # all or the start of a reference, in capitals
    stage: str | None = None
    risk: Risk | None = None
    overdue: bool | None = None  # a running deadline past due (True) or none (False)
    due_this_week: bool = False  # a running deadline due in the next 7 days
    assigned: str | None = None  # "me", "nobody" or a user's id
    body: str | None = None
    nation: Nation | None = None
    establishment: int | None = None
    sort: str = "received_newest"

    @property
    def narrowed(self) -> bool:
        return replace(self, sort="received_newest") != CaseFilters()


@dataclass(frozen=True)
class FilterOptions:
    """Each select filter's values (value, label) for one viewer; a filter with no values is not offered."""

    choices: dict[str, list[tuple[str, str]]]

    def offered(self, name: str) -> bool:
        return name == "q" or bool(self.choices.get(name))

    def label(self, name: str, value: str) -> str:
        if name == "q":
            return value
        return dict([("me", "Me")] if name == "assigned" else [], **dict(self.choices.get(name, []))).get(value, value)


def _stages(engine: Engine) -> list[tuple[str, str]]:
    """Every stage of every version of the protocol (a case may be at a stage only an older one has)."""
    seen: dict[str, str] = {}
    for version in reversed(engine.versions(SPEC_KEY)):
        for name, stage in engine.spec(SPEC_KEY, version).stages.items():
            seen.setdefault(name, stage.label or name)
    return list(seen.items())


def stage_names(engine: Engine) -> list[str]:
    return [name for name, _ in _stages(engine)]


def filter_options(session: Session, engine: Engine, viewer: User) -> FilterOptions:
    staff = viewer.role is Role.STAFF
    choices: dict[str, list[tuple[str, str]]] = {
        "stage": _stages(engine),
        "risk": [(r.value, RISK_LABELS[r]) for r in Risk],
        "overdue": [("yes", "Overdue"), ("no", "Not overdue")],
        "due": [("week", "In the next 7 days")],
        "nation": [(n.value, NATION_LABELS[n]) for n in Nation],
        "establishment": [(str(i), n) for i, n in session.execute(
            select(Establishment.id, Establishment.name).order_by(Establishment.name))],
        "sort": list(SORTS.items()),
    }
    if not staff:  # a member of staff sees only their own cases, all of their own body
        choices["body"] = [(c, n) for c, n in session.execute(select(Body.code, Body.name).order_by(Body.name))]
        colleagues = [(str(i), n + ("" if active else " (inactive)")) for i, n, active in session.execute(
            select(User.id, User.name, User.active).where(User.body_code == viewer.body_code,
                                                          User.role.in_((Role.STAFF, Role.LEAD)),
                                                          User.id != viewer.id).order_by(User.name, User.id))]
        me = [("me", "Me")] if viewer.role is Role.LEAD else []
        choices["assigned"] = [*me, ("nobody", "Nobody"), *colleagues]
    return FilterOptions(choices)


@dataclass
class Checked:
    filters: CaseFilters
    values: dict[str, str] = field(default_factory=dict)  # the valid filters as given (for links)
    errors: dict[str, str] = field(default_factory=dict)  # filter name -> message


def check_filters(options: FilterOptions, raw: Mapping[str, str | None]) -> Checked:
    """Each asked-for value that is offered becomes a filter; each other one a message (and is dropped)."""
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name in (*FILTERS, "sort"):
        value = (raw.get(name) or "").strip()
        if not value:
            continue
        if name == "q":
            value = value.upper()
            ok = bool(REFERENCE.match(value))
        else:  # "me" is always accepted (the API's assigned=me): for staff it is every case, so not offered
            ok = value in {v for v, _ in options.choices.get(name, [])} or (name, value) == ("assigned", "me")
        if ok:
            values[name] = value
        else:
            errors[name] = MESSAGES[name]
    filters = CaseFilters(
        reference=values.get("q"), stage=values.get("stage"),
        risk=Risk(values["risk"]) if "risk" in values else None,
        overdue={"yes": True, "no": False}[values["overdue"]] if "overdue" in values else None,
        due_this_week=values.get("due") == "week", assigned=values.get("assigned"), body=values.get("body"),
        nation=Nation(values["nation"]) if "nation" in values else None,
        establishment=int(values["establishment"]) if "establishment" in values else None,
        sort=values.get("sort", "received_newest"))
    return Checked(filters, values, errors)


@dataclass(frozen=True)
class Tag:
    """A selected filter, as the MoJ filter pattern shows it: its heading and the value's label."""

    name: str
    heading: str
    label: str


def selected(options: FilterOptions, values: Mapping[str, str]) -> list[Tag]:
    return [Tag(name, NAMES[name], options.label(name, values[name])) for name in FILTERS if name in values]


# -- the list ----------------------------------------------------------------------------------------


def _conditions(session: Session, viewer: User, f: CaseFilters, at: datetime
                ) -> tuple[list[ColumnElement[bool]], bool]:
    """The WHERE clauses for the viewer and filters, and whether the establishment must be joined."""
    where: list[ColumnElement[bool]] = []
    visible = visible_cases(viewer).whereclause
    if visible is not None:
        where.append(visible)
    join_establishment = False
    if f.reference:
        where.append(Case.reference.like(f.reference + "%"))  # letters, digits and hyphens only
        if session.get_bind().dialect.name == "sqlite":  # its LIKE ignores case, so cannot use the index:
            where.append(Case.reference.between(f.reference, f.reference + "~"))  # a binary range can
    if f.stage:
        where.append(Case.current_stage == f.stage)  # the mirror: one table's index (decision 6)
    if f.risk:
        where.append(Case.risk == f.risk)
    if f.body:
        where.append(Case.owning_body_code == f.body)
    if f.establishment is not None:
        where.append(Case.establishment_id == f.establishment)
    if f.nation:
        join_establishment = True
        where.append(Establishment.nation == f.nation)
    if f.overdue is not None:  # what the home counts as overdue: a running deadline past due
        late = select(DeadlineRow.instance_id).where(DeadlineRow.status.in_(RUNNING), DeadlineRow.due_at <= at)
        where.append(Case.instance_id.in_(late) if f.overdue else Case.instance_id.not_in(late))
    if f.due_this_week:
        soon = select(DeadlineRow.instance_id).where(DeadlineRow.status.in_(RUNNING), DeadlineRow.due_at > at,
                                                     DeadlineRow.due_at <= at + WEEK)
        where.append(Case.instance_id.in_(soon))
    if f.assigned == "me":
        where.append(Case.assigned_user_id == viewer.id)
    elif f.assigned == "nobody":
        where.append(Case.assigned_user_id.is_(None))
    elif f.assigned:
        where.append(Case.assigned_user_id == int(f.assigned))
    return where, join_establishment


def _ids(join_establishment: bool) -> Select[Any]:
    stmt = select(Case.id).select_from(Case)
    if join_establishment:
        stmt = stmt.join(Establishment, Establishment.id == Case.establishment_id)
    return stmt


@dataclass(frozen=True)
class CaseListPage:
    rows: list[CaseRow]
    total: int  # counted up to cap + 1
    capped: bool  # more than cap match: the page says "more than 10,000"
    page: int
    pages: int  # pages of the first cap matches
    per_page: int
    cap: int  # COUNT_CAP when the list was read

    @property
    def counted(self) -> int:
        """The total as told: at most the cap (``capped`` says there are more)."""
        return min(self.total, self.cap)

    @property
    def first(self) -> int:
        return (self.page - 1) * self.per_page + 1

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1


def list_cases(session: Session, engine: Engine, viewer: User, f: CaseFilters, at: datetime, *, page: int = 1,
               per_page: int = PAGE_SIZE) -> CaseListPage:
    """The viewer's cases matching ``f``, sorted, one page of them. A page past the last is empty (the
    caller says so)."""
    where, join = _conditions(session, viewer, f, at)
    # Counting stops at COUNT_CAP + 1: past that the page says "more than 10,000" (and the sort and
    # filters narrow it); a full count of 100,000 visible cases would cost more than the page.
    cap = COUNT_CAP
    matching = _ids(join).where(*where).limit(cap + 1).subquery()
    total = int(session.execute(select(func.count()).select_from(matching)).scalar_one())
    # First the page's ids (only the joins the filters need, so the database can sort narrow rows
    # or walk an index), then what is shown for those.
    ids = _ids(join).where(*where)
    if f.sort == "received_oldest":
        ids = ids.order_by(Case.received_at, Case.id)
    elif f.sort == "risk":
        rank = case((Case.risk == Risk.URGENT, 0), (Case.risk == Risk.HIGH, 1), else_=2)
        ids = ids.order_by(rank, Case.received_at.desc(), Case.id.desc())
    elif f.sort == "time_left":
        due = (select(func.min(DeadlineRow.due_at))
               .where(DeadlineRow.instance_id == Case.instance_id, DeadlineRow.status.in_(RUNNING))
               .scalar_subquery())
        ids = ids.order_by(nulls_last(due.asc()), Case.received_at.desc(), Case.id.desc())
    elif f.narrowed:
        # With filters, let them lead (their indexes) and sort the matches: walking the received-time
        # index instead reads every visible case when few match (measured 100+ ms at 100,000 cases).
        # coalesce(x, x) is x, but hides the index from the planner on both databases.
        received = func.coalesce(Case.received_at, Case.received_at)
        ids = ids.order_by(received.desc(), Case.id.desc())
    else:
        ids = ids.order_by(Case.received_at.desc(), Case.id.desc())
    pages = max(1, math.ceil(min(total, cap) / per_page))
    offset = (page - 1) * per_page
    take = min(per_page, cap - offset)  # never past the first ``cap`` matches
    page_ids = list(session.scalars(ids.limit(take).offset(offset))) if page <= pages and take > 0 else []
    rows = case_rows(session, engine, viewer, page_ids, at)
    return CaseListPage(rows, total, total > cap, page, pages, per_page, cap)
