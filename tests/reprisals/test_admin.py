"""Administration services: invitations, roles and activity, establishments, protocol versions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from reprisals import access_log
from reprisals import admin as ops
from reprisals.accounts import sign_in, start_session
from reprisals.errors import InvalidInput, NotAllowed
from reprisals.messaging import Messenger
from reprisals.models import Role, User
from reprisals.protocol import SPEC_KEY, build_engine, bundled_specs
from reprisals.protocol_store import activate_protocol, active_version, known_versions, upload_protocol
from tests.factories import cipher
from tests.reprisals.conftest import Cast
from tests.support.invitations import invitation_token
from workflow.errors import SpecError

NOW = datetime(2025, 4, 16, 9, 30, tzinfo=UTC)


def _admin(session: Session, cast: Cast) -> User:
    user = session.get(User, cast.admin.id)
    assert user is not None
    return user


MESSENGER = Messenger("https://reprisals.example.test")


def test_invitation_round_trip_and_single_use(session: Session, cast: Cast) -> None:
    admin = _admin(session, cast)
    user = ops.invite_user(session, admin, {"name": "Ann", "email": " Ann@Example.TEST ", "role": "lead",
                                            "body_code": "IMB"}, NOW, MESSENGER)
    assert user.email == "ann@example.test" and ops.is_invited(user)
    token = invitation_token(session, "ann@example.test")  # only in the e-mail to her
    assert sign_in(session, "ann@example.test", ops.UNUSABLE_PASSWORD, "c", NOW) is None
    with pytest.raises(InvalidInput) as bad:
        ops.accept_invitation(session, token, "long enough password", "different password!", NOW)
    assert set(bad.value.errors) == {"confirm"}
    ops.accept_invitation(session, token, "long enough password", "long enough password", NOW)
    assert sign_in(session, "ann@example.test", "long enough password", "c", NOW) is not None
    with pytest.raises(NotAllowed):
        ops.accept_invitation(session, token, "another long password", "another long password", NOW)


def test_invitation_expires_and_is_replaced(session: Session, cast: Cast) -> None:
    admin = _admin(session, cast)
    user = ops.invite_user(session, admin, {"name": "Bo", "email": "bo@example.test", "role": "admin"}, NOW,
                           MESSENGER)
    first = invitation_token(session, "bo@example.test")
    assert user.body_code is None
    assert ops.open_invitation(session, first, NOW + timedelta(days=6)) is not None
    assert ops.open_invitation(session, first, NOW + timedelta(days=7)) is None
    ops.new_invitation(session, admin, user, NOW + timedelta(days=1), MESSENGER)
    second = invitation_token(session, "bo@example.test")
    assert second != first
    assert ops.open_invitation(session, first, NOW + timedelta(days=1)) is None
    assert ops.open_invitation(session, second, NOW + timedelta(days=1)) is not None
    assert ops.open_invitation(session, "x" * 500, NOW) is None


def test_invite_validation_and_only_admins(session: Session, cast: Cast) -> None:
    admin = _admin(session, cast)
    with pytest.raises(InvalidInput) as bad:
        ops.invite_user(session, admin, {"name": "", "email": "nope", "role": "boss"}, NOW, MESSENGER)
    assert set(bad.value.errors) == {"name", "email", "role"}
    with pytest.raises(InvalidInput) as bad:
        ops.invite_user(session, admin, {"name": "X", "email": "x@example.test", "role": "staff",
                                         "body_code": "NOPE"}, NOW, MESSENGER)
    assert set(bad.value.errors) == {"body_code"}
    lead = session.get(User, cast.lead.id)
    assert lead is not None
    with pytest.raises(NotAllowed):
        ops.invite_user(session, lead, {"name": "X", "email": "x@example.test", "role": "staff",
                                        "body_code": "IMB"}, NOW, MESSENGER)


def test_deactivation_ends_sessions_not_self(session: Session, cast: Cast) -> None:
    admin = _admin(session, cast)
    staff = session.get(User, cast.staff.id)
    assert staff is not None
    start_session(session, staff, NOW)
    ops.set_active(session, admin, staff, False, NOW)
    from reprisals.accounts import WebSession

    assert all(r.ended_why == "deactivated" for r in session.query(WebSession).filter_by(user_id=staff.id))
    with pytest.raises(NotAllowed):
        ops.set_active(session, admin, admin, False, NOW)
    ops.set_active(session, admin, staff, False, NOW)  # no change: nothing to log
    ops.set_active(session, admin, staff, True, NOW, client="198.51.100.7")
    logged = [(e.kind, e.actor_id, e.subject_user_id, e.client_hash is not None) for e in access_log.entries(session)
              if e.kind in ("account_deactivated", "account_reactivated")]
    assert logged == [("account_reactivated", admin.id, staff.id, True),
                      ("account_deactivated", admin.id, staff.id, False)]
    with pytest.raises(InvalidInput):
        ops.change_role(session, admin, admin, "lead", "IMB", NOW)
    ops.change_role(session, admin, staff, "auditor", "PPO", NOW)
    assert staff.role is Role.AUDITOR and staff.body_code == "PPO"


def test_establishment_validation(session: Session, cast: Cast) -> None:
    admin = _admin(session, cast)
    with pytest.raises(InvalidInput) as bad:
        ops.create_establishment(session, admin, {"name": "HMP THORNBURY FEN", "type": "x", "nation": "",
                                                  "operator": ""})
    assert set(bad.value.errors) == {"name", "type", "nation", "operator"}
    row = ops.create_establishment(session, admin, {"name": "HMP New", "type": "prison", "nation": "scotland",
                                                    "operator": "SPS", "active": True})
    ops.update_establishment(session, admin, row, {"name": "HMP New", "type": "prison", "nation": "scotland",
                                                   "operator": "SPS", "active": False})
    assert row.active is False


def test_protocol_versions(session: Session, cast: Cast) -> None:
    engine = build_engine(cipher=cipher())  # its own: uploads register into it
    admin = _admin(session, cast)
    with pytest.raises(SpecError) as bad:
        upload_protocol(session, engine, admin, "key: sanctions\nversion: [", NOW)
    assert bad.value.problems and "not valid YAML" in bad.value.problems[0].message
    text = bundled_specs()[0].text.replace("version: 1", "version: 3", 1)
    with pytest.raises(SpecError):
        upload_protocol(session, engine, admin, text.replace("guards: [escalation_below_max]",
                                                             "guards: [no_such_guard]"), NOW)
    assert active_version(session, engine, SPEC_KEY) is None
    upload_protocol(session, engine, admin, text, NOW)
    assert engine.versions(SPEC_KEY) == [1, 2, 3]
    assert active_version(session, engine, SPEC_KEY) == 2  # stored but not active: the newest shipped
    activate_protocol(session, engine, admin, SPEC_KEY, 3, NOW)
    assert active_version(session, engine, SPEC_KEY) == 3
    # another process (a fresh engine) registers the active version when it is asked for it
    other = build_engine(cipher=cipher())
    assert active_version(session, other, SPEC_KEY) == 3 and 3 in other.versions(SPEC_KEY)
    rows = known_versions(session, engine, SPEC_KEY)
    assert [(v.version, v.active, v.uploaded, v.activatable) for v in rows] == [(3, True, True, False),
                                                                                 (2, False, False, True),
                                                                                 (1, False, False, False)]
    with pytest.raises(InvalidInput):
        activate_protocol(session, engine, admin, SPEC_KEY, 9, NOW)
    activate_protocol(session, engine, admin, SPEC_KEY, 2, NOW)
    assert active_version(session, engine, SPEC_KEY) == 2
    # Logged: the one upload that was stored and the two activations, oldest last; refusals left nothing.
    logged = [(e.kind, e.actor_id, e.detail) for e in access_log.entries(session) if e.kind.startswith("protocol_")]
    assert logged == [("protocol_activated", admin.id, {"protocol": SPEC_KEY, "version": 2, "shipped": True}),
                      ("protocol_activated", admin.id, {"protocol": SPEC_KEY, "version": 3, "shipped": False}),
                      ("protocol_uploaded", admin.id, {"protocol": SPEC_KEY, "version": 3})]
