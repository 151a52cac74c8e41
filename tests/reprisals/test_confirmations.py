"""Accounts that can read identity wait for a lead of their body (decision 22); assignment stays within the
owning body; invitations never go through the log channel in production."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from notifications.models import OutboxMessage
from reprisals import admin as ops
from reprisals import confirmations
from reprisals.access import can_view_case, can_view_identity, visible_cases
from reprisals.errors import InvalidInput, NotAllowed
from reprisals.messaging import InvitationsUnavailable, Messenger, leads_of
from reprisals.models import Role, User
from reprisals.services import assign_case, assignable_users, open_case, view_identity
from tests.factories import case_data, cipher, make_user
from tests.reprisals.conftest import Cast
from workflow.engine import Engine

NOW = datetime(2025, 4, 16, 9, 30, tzinfo=UTC)
MESSENGER = Messenger("https://reprisals.example.test")


def _get(session: Session, user: User) -> User:
    row = session.get(User, user.id)
    assert row is not None
    return row


def test_a_pending_account_sees_nothing_until_a_confirmed_lead_of_its_body_confirms_it(
        session: Session, wf: Engine, cast: Cast) -> None:
    lead, admin = _get(session, cast.lead), _get(session, cast.admin)
    case = open_case(session, wf, cipher(), lead, NOW, case_data(cast.establishment))
    newcomer = ops.invite_user(session, admin, {"name": "Nia", "email": "nia@example.test", "role": "lead",
                                                "body_code": "IMB"}, NOW, MESSENGER)
    assert newcomer.pending
    # The body's confirmed leads are told in the app (never by e-mail); the newcomer hears nothing of cases.
    told = set(session.scalars(select(OutboxMessage.recipient).where(OutboxMessage.template == "account_to_confirm")))
    assert told == {str(cast.lead.id), str(cast.second_lead.id)}
    assert newcomer.id not in {u.id for u in leads_of(session, "IMB")}
    assert not can_view_case(newcomer, case) and not can_view_identity(newcomer, case)
    assert list(session.scalars(visible_cases(newcomer))) == []
    assert newcomer.id not in {u.id for u in assignable_users(session, "IMB")}
    with pytest.raises(NotAllowed, match="waiting for a lead of IMB"):
        open_case(session, wf, cipher(), newcomer, NOW, case_data(cast.establishment))
    with pytest.raises(InvalidInput) as bad:
        assign_case(session, wf, lead, case, newcomer, NOW)
    assert "confirmed" in bad.value.errors["assignee"]

    # Nobody but a confirmed lead of IMB, other than the account itself, may decide.
    unconfirmed = make_user(session, role=Role.LEAD, body="IMB", confirmed=False)
    for who in (newcomer, unconfirmed, _get(session, cast.party_lead), _get(session, cast.staff), admin):
        with pytest.raises(NotAllowed):
            confirmations.confirm_account(session, who, newcomer, NOW)
    assert confirmations.list_pending(session, unconfirmed) == []
    assert {u.id for u in confirmations.list_pending(session, lead)} == {newcomer.id, unconfirmed.id}
    confirmations.confirm_account(session, lead, newcomer, NOW)
    assert not newcomer.pending and can_view_identity(newcomer, case)
    assert newcomer.id in {u.id for u in leads_of(session, "IMB")}
    with pytest.raises(NotAllowed, match="not waiting"):
        confirmations.confirm_account(session, lead, newcomer, NOW)

    # A new role or body makes it wait again (for the new body's leads); auditors and admins never wait.
    ops.change_role(session, admin, newcomer, "staff", "HMIP", NOW, MESSENGER)
    assert newcomer.pending and confirmations.list_pending(session, lead) == [unconfirmed]
    ops.change_role(session, admin, newcomer, "auditor", "HMIP", NOW, MESSENGER)
    assert not newcomer.pending


def test_only_the_owning_bodys_people_are_assigned_and_a_party_lead_never_sees_identity(
        session: Session, wf: Engine, cast: Cast) -> None:
    lead = _get(session, cast.lead)
    party_lead, party_staff = _get(session, cast.party_lead), make_user(session, role=Role.STAFF, body="HMIP")
    with pytest.raises(InvalidInput) as bad:
        open_case(session, wf, cipher(), lead, NOW,
                  case_data(cast.establishment, party_bodies=["HMIP"], assigned_user_id=party_staff.id))
    assert bad.value.errors["assigned_user_id"].startswith("must be someone of IMB, the body that owns the case")
    case = open_case(session, wf, cipher(), lead, NOW, case_data(cast.establishment, party_bodies=["HMIP"]))
    before = session.scalar(select(func.count()).select_from(OutboxMessage))
    for person in (party_lead, party_staff):
        with pytest.raises(InvalidInput) as bad:
            assign_case(session, wf, lead, case, person, NOW)
        assert "people of another body, even one on the case, cannot be assigned" in bad.value.errors["assignee"]
    assert case.assigned_user_id is None
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == before
    assert can_view_case(party_lead, case) and not can_view_identity(party_lead, case)
    with pytest.raises(NotAllowed):
        view_identity(session, wf, cipher(), party_lead, case, "Curious", NOW)
    # Even assigned by other means (data from before this rule), a party body's member sees no identity.
    case.assigned_user_id = party_staff.id
    assert not can_view_identity(party_staff, case)


def test_invitations_are_refused_in_production_with_the_log_channel_and_nothing_is_written(
        session: Session, cast: Cast) -> None:
    admin = _get(session, cast.admin)
    users = session.scalar(select(func.count()).select_from(User))
    with pytest.raises(InvitationsUnavailable, match="REPRISALS_EMAIL_CHANNEL is log"):
        ops.invite_user(session, admin, {"name": "Nia", "email": "nia@example.test", "role": "staff",
                                         "body_code": "IMB"}, NOW, Messenger("https://x.example", production=True))
    assert session.scalar(select(func.count()).select_from(User)) == users
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    # With SMTP it goes, by e-mail only: nothing in anyone's in-app inbox.
    ops.invite_user(session, admin, {"name": "Nia", "email": "nia@example.test", "role": "auditor",
                                     "body_code": "IMB"}, NOW, Messenger("https://x.example", "smtp", production=True))
    [row] = session.scalars(select(OutboxMessage).where(OutboxMessage.template == "invitation"))
    assert (row.channel, row.recipient, row.urgent) == ("smtp", "nia@example.test", True)

