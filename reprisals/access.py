"""Who may see and do what, case by case (PROTOCOL.md, "People and what they may do").

An account waiting for a lead of its body to confirm it (``User.pending``, decision 22) holds no role on
any case and sees none: every rule below treats it as inactive. Identity is only ever for people of the
owning body (its leads, and the assigned member of staff or lead, who can only be of that body)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, false, or_, select

from reprisals.models import Case, CaseParty, Role, User


@dataclass(frozen=True)
class CaseActor:
    """A user as the engine sees them on one case: an id and the roles they hold there."""

    id: str
    roles: frozenset[str]


def _body_involved(user: User, case: Case) -> bool:
    return user.body_code is not None and (
        user.body_code == case.owning_body_code or user.body_code in case.party_codes
    )


def has_access(user: User) -> bool:
    """Active, and not waiting for confirmation: the first condition of every rule of this module."""
    return user.active and not user.pending


def case_roles(user: User, case: Case) -> frozenset[str]:
    """The workflow roles a user holds on a case. Leads act on cases their body owns or is party
    to; staff on cases assigned to them; auditors and admins on none."""
    if not has_access(user):
        return frozenset()
    roles: set[str] = set()
    if user.role is Role.LEAD and _body_involved(user, case):
        roles.add("lead")
    if user.role in (Role.STAFF, Role.LEAD) and case.assigned_user_id == user.id:
        roles.add("staff")
    return frozenset(roles)


def actor_for(user: User, case: Case) -> CaseActor:
    return CaseActor(str(user.id), case_roles(user, case))


def can_view_case(user: User, case: Case) -> bool:
    if not has_access(user):
        return False
    if user.role in (Role.LEAD, Role.AUDITOR):
        return _body_involved(user, case)
    if user.role is Role.STAFF:
        return case.assigned_user_id == user.id
    return False  # admins manage the system, not cases


def can_view_identity(user: User, case: Case) -> bool:
    """The owning body's lead and the assigned staff of that body; never a party body's people, nor
    auditors (only through an unmask request)."""
    if not has_access(user) or user.body_code != case.owning_body_code:
        return False
    if user.role is Role.LEAD:
        return True
    return user.role is Role.STAFF and case.assigned_user_id == user.id


def is_owning_lead(user: User, case: Case) -> bool:
    """An active, confirmed lead of the body that owns the case: who corrects identity, decides whether two
    cases are one person and decides auditors' requests to see identity."""
    return has_access(user) and user.role is Role.LEAD and user.body_code == case.owning_body_code


def visible_cases(user: User) -> Select[Case]:
    """A query for the cases a user may see (the same rule as can_view_case, in SQL)."""
    stmt = select(Case)
    if not has_access(user) or user.role is Role.ADMIN:
        return stmt.where(false())
    if user.role is Role.STAFF:
        return stmt.where(Case.assigned_user_id == user.id)
    # EXISTS, not IN (list): with IN, SQLite materialises every case the body is party to and walks
    # them all (measured 400 ms for a filtered page of 100,000 cases); EXISTS lets the filters lead.
    party = select(CaseParty.case_id).where(CaseParty.case_id == Case.id, CaseParty.body_code == user.body_code)
    return stmt.where(or_(Case.owning_body_code == user.body_code, party.exists()))
