"""Small reads the pages need that belong to no one screen: a row by its id, the bodies, a user's API tokens,
the running deadlines of the cases a user may see, and whether the database answers at all."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from reprisals.access import visible_cases
from reprisals.accounts import ApiToken
from reprisals.models import Body, Case, Establishment, User
from workflow.models import LIVE, OVERDUE, DeadlineRow, WorkflowInstance


def user_by_id(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def users_by_id(session: Session, ids: Iterable[int]) -> dict[int, User]:
    wanted = sorted(set(ids))
    return {u.id: u for u in session.scalars(select(User).where(User.id.in_(wanted)))} if wanted else {}


def establishment_by_id(session: Session, establishment_id: int) -> Establishment | None:
    return session.get(Establishment, establishment_id)


def bodies(session: Session) -> list[Body]:
    """Every body, by code."""
    return list(session.scalars(select(Body).order_by(Body.code)))


def api_tokens_of(session: Session, user_id: int) -> list[ApiToken]:
    """A user's API tokens, newest first."""
    return list(session.scalars(select(ApiToken).where(ApiToken.user_id == user_id)
                                .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())))


def instance_now(session: Session, instance_id: int) -> tuple[int | None, str | None]:
    """A workflow instance's version and stage as the database has them now (after a conflict)."""
    row = session.get(WorkflowInstance, instance_id, populate_existing=True)
    return (row.version, row.stage) if row is not None else (None, None)


def ping(session: Session) -> None:
    """Raises if the database cannot be read."""
    session.execute(text("SELECT 1"))


@dataclass(frozen=True)
class VisibleDeadline:
    reference: str
    row: DeadlineRow


def visible_deadlines(session: Session, user: User, *, overdue: bool | None, page: int, per_page: int
                      ) -> list[VisibleDeadline]:
    """The live deadlines of the cases ``user`` may see, soonest first (overdue: only or none of those overdue)."""
    visible = visible_cases(user).with_only_columns(Case.instance_id).scalar_subquery()
    stmt = (select(Case.reference, DeadlineRow).join(Case, Case.instance_id == DeadlineRow.instance_id)
            .where(DeadlineRow.status.in_(LIVE), DeadlineRow.instance_id.in_(visible)))
    if overdue is not None:
        stmt = stmt.where(DeadlineRow.status == OVERDUE if overdue else DeadlineRow.status != OVERDUE)
    rows = session.execute(stmt.order_by(DeadlineRow.due_at, DeadlineRow.id).limit(per_page)
                           .offset((page - 1) * per_page))
    return [VisibleDeadline(ref, row) for ref, row in rows]
