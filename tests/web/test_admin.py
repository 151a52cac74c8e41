"""Administration through the web: invitations, roles, deactivation, establishments, protocol
versions, failed messages; every admin route refuses non-admins."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from notifications.models import FAILED, OutboxMessage
from reprisals.accounts import create_token, user_for_token
from reprisals.models import Case, Establishment, User
from reprisals.protocol import bundled_specs
from tests.factories import case_data, cipher
from tests.support.invitations import invitation_token
from tests.web.conftest import PASSWORD, Web, count_rows, csrf_token

ADMIN_PATHS = ["/admin/", "/admin/users", "/admin/users/1", "/admin/establishments", "/admin/establishments/1",
               "/admin/establishments/import", "/admin/bodies", "/admin/protocols", "/admin/failed-messages"]
ADMIN_POSTS = ["/admin/users", "/admin/users/1", "/admin/users/1/active", "/admin/users/1/invitation",
               "/admin/establishments", "/admin/establishments/1", "/admin/establishments/import", "/admin/bodies",
               "/admin/protocols", "/admin/protocols/sanctions/1/activate"]


def _user(web: Web, email: str) -> User | None:
    with web.database.session() as s:
        return s.scalars(sa.select(User).where(User.email == email)).one_or_none()


def test_non_admins_get_403_everywhere(web: Web) -> None:
    for email in (web.world.lead, web.world.staff, web.world.auditor):
        client = web.sign_in(email)
        token = csrf_token(client.get("/account/").get_data(as_text=True))
        for path in ADMIN_PATHS:
            assert client.get(path).status_code == 403, (email, path)
        for path in ADMIN_POSTS:
            assert client.post(path, data={"csrf_token": token}).status_code == 403, (email, path)


def test_invite_then_set_password_then_sign_in(web: Web) -> None:
    admin = web.sign_in(web.world.admin)
    r = web.post(admin, "/admin/users", {"name": "Nia Newcomer", "email": "Nia@Example.test", "role": "staff",
                                         "body_code": "IMB"})
    assert r.status_code == 302, r.get_data(as_text=True)[:3000]
    html = admin.get(r.headers["Location"]).get_data(as_text=True)
    assert "An invitation has been e-mailed to Nia Newcomer at nia@example.test" in html
    with web.database.session() as s:
        token = invitation_token(s, "nia@example.test")  # in her e-mail, not on the admin's page
    assert token not in html
    path = f"/invitation/{token}"
    user = _user(web, "nia@example.test")
    assert user is not None and user.body_code == "IMB" and user.active
    with web.database.session() as s:
        stored = s.execute(sa.text("SELECT token_hash FROM invitations")).scalar_one()
    assert token not in stored  # hashed
    # the invited user cannot sign in before choosing a password
    anon = web.client()
    page = anon.get("/sign-in").get_data(as_text=True)
    assert anon.post("/sign-in", data={"email": "nia@example.test", "password": "!invited",
                                       "csrf_token": csrf_token(page)}).status_code == 200
    invitee = web.client()
    short = web.post(invitee, path, {"password": "short", "confirm": "short"})
    assert short.status_code == 400 and "at least 12 characters" in short.get_data(as_text=True)
    done = web.post(invitee, path, {"password": "a fine long password", "confirm": "a fine long password"})
    assert done.status_code == 302 and "/sign-in" in done.headers["Location"]
    assert invitee.get(path).status_code == 404  # used once only
    web.sign_in("nia@example.test", "a fine long password")


def test_invitation_expires_after_seven_days(web: Web) -> None:
    admin = web.sign_in(web.world.admin)
    assert web.post(admin, "/admin/users", {"name": "Late Larry", "email": "larry@example.test", "role": "admin",
                                            "body_code": ""}).status_code == 302
    with web.database.session() as s:
        path = f"/invitation/{invitation_token(s, 'larry@example.test')}"
    web.clock.advance(timedelta(days=7, minutes=1))
    assert web.client().get(path).status_code == 404


@pytest.mark.parametrize("data, field, message", [
    ({"name": "Bad Mail", "email": "not-an-address", "role": "staff", "body_code": "IMB"}, "email",
     "Enter a valid email address"),
    ({"name": "No Body", "email": "nobody@example.test", "role": "staff", "body_code": ""}, "body_code",
     "Select the body"),
    ({"name": "", "email": "noname@example.test", "role": "lead", "body_code": "IMB"}, "name", "Enter the user"),
])
def test_invalid_invitations_create_nobody(web: Web, data: dict[str, str], field: str, message: str) -> None:
    admin = web.sign_in(web.world.admin)
    before = count_rows(web.database, ("users", "invitations"))
    r = web.post(admin, "/admin/users", data)
    html = r.get_data(as_text=True)
    assert r.status_code == 400
    assert "govuk-error-summary" in html and f'href="#{field}"' in html and message in html
    assert count_rows(web.database, ("users", "invitations")) == before


def test_duplicate_email_is_refused(web: Web) -> None:
    admin = web.sign_in(web.world.admin)
    before = count_rows(web.database, ("users", "invitations"))
    r = web.post(admin, "/admin/users", {"name": "Copy", "email": web.world.staff.upper(), "role": "staff",
                                         "body_code": "IMB"})
    assert r.status_code == 400 and "already exists" in r.get_data(as_text=True)
    assert count_rows(web.database, ("users", "invitations")) == before


def test_change_role_and_deactivate_ends_sessions(web: Web) -> None:
    staff = web.sign_in(web.world.staff)
    assert staff.get("/").status_code == 200
    step = staff.get("/cases/new/establishment").get_data(as_text=True)
    assert staff.post("/cases/new/establishment", data={"establishment_id": str(web.world.establishment_id),
                                                        "csrf_token": csrf_token(step)}).status_code == 302
    assert count_rows(web.database, ("report_drafts",)) == {"report_drafts": 1}  # a report being written
    admin = web.sign_in(web.world.admin)
    target = _user(web, web.world.staff)
    assert target is not None
    bad = web.post(admin, f"/admin/users/{target.id}", {"role": "lead", "body_code": ""})
    assert bad.status_code == 400 and "Select the body" in bad.get_data(as_text=True)
    assert _user(web, web.world.staff).role.value == "staff"  # type: ignore[union-attr]
    r = web.post(admin, f"/admin/users/{target.id}/active", {}, form_page=f"/admin/users/{target.id}")
    assert r.status_code == 302
    assert _user(web, web.world.staff).active is False  # type: ignore[union-attr]
    gone = staff.get("/")
    assert gone.status_code == 302 and "/sign-in" in gone.headers["Location"]
    assert count_rows(web.database, ("report_drafts",)) == {"report_drafts": 0}  # ended with the session
    web.post(admin, f"/admin/users/{target.id}/active", {}, form_page=f"/admin/users/{target.id}")
    assert _user(web, web.world.staff).active is True  # type: ignore[union-attr]
    web.sign_in(web.world.staff)
    ok = web.post(admin, f"/admin/users/{target.id}", {"role": "lead", "body_code": "IMB"})
    assert ok.status_code == 302 and _user(web, web.world.staff).role.value == "lead"  # type: ignore[union-attr]


def test_admin_cannot_deactivate_themselves(web: Web) -> None:
    admin = web.sign_in(web.world.admin)
    me = _user(web, web.world.admin)
    assert me is not None
    r = web.post(admin, f"/admin/users/{me.id}/active", {}, form_page=f"/admin/users/{me.id}")
    assert r.status_code == 302
    assert _user(web, web.world.admin).active is True  # type: ignore[union-attr]
    assert admin.get("/admin/").status_code == 200


def test_establishments_add_edit_and_refuse_bad_input(web: Web) -> None:
    admin = web.sign_in(web.world.admin)
    before = count_rows(web.database, ("establishments",))
    bad = web.post(admin, "/admin/establishments", {"name": "", "type": "castle", "nation": "england",
                                                    "operator": "", "active": "y"})
    html = bad.get_data(as_text=True)
    assert bad.status_code == 400 and "govuk-error-summary" in html
    assert 'href="#name"' in html and 'href="#type"' in html and 'href="#operator"' in html
    dup = web.post(admin, "/admin/establishments", {"name": "hmp thornbury fen", "type": "prison",
                                                    "nation": "england", "operator": "HMPPS", "active": "y"})
    assert dup.status_code == 400 and "already exists" in dup.get_data(as_text=True)
    assert count_rows(web.database, ("establishments",)) == before
    ok = web.post(admin, "/admin/establishments", {"name": "HMP Newtown", "type": "prison", "nation": "wales",
                                                   "operator": "HMPPS", "active": "y"})
    assert ok.status_code == 302
    with web.database.session() as s:
        row = s.scalars(sa.select(Establishment).where(Establishment.name == "HMP Newtown")).one()
        assert row.nation.value == "wales" and row.active
    path = f"/admin/establishments/{row.id}"
    refused = web.post(admin, path, {"name": "HMP Newtown", "type": "prison", "nation": "atlantis",
                                     "operator": "HMPPS"})
    assert refused.status_code == 400
    edited = web.post(admin, path, {"name": "HMP Newtown", "type": "immigration_removal_centre",
                                    "nation": "wales", "operator": "Serco"})
    assert edited.status_code == 302
    with web.database.session() as s:
        row = s.get(Establishment, row.id)  # type: ignore[assignment]
        assert row.operator == "Serco" and row.type.value == "immigration_removal_centre" and not row.active


BAD_SPEC = """key: sanctions
version: 7
title: Broken
roles: [lead]
initial: nowhere
stages:
  reported:
    deadlines:
      - {name: x, due: 3 weeks}
triggers: {}
"""


def test_protocol_upload_with_errors_stores_nothing(web: Web) -> None:
    admin = web.sign_in(web.world.admin)
    before = count_rows(web.database, ("protocol_versions",))
    r = web.post(admin, "/admin/protocols", {"text": BAD_SPEC})
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and "govuk-error-summary" in html
    assert "stages.reported.deadlines[0].due: unknown unit" in html and "initial: unknown stage" in html
    assert count_rows(web.database, ("protocol_versions",)) == before
    assert web.rt.engine.versions("sanctions") == [1, 2]
    dup = web.post(admin, "/admin/protocols", {"text": bundled_specs()[0].text})
    assert dup.status_code == 400 and "already exists" in dup.get_data(as_text=True)


def test_an_upload_that_renames_a_trigger_the_services_depend_on_is_refused_naming_it(web: Web) -> None:
    """A new version that renames ``refer`` would silently stop recording consent overrides and contacts:
    refused, with the path and what is wrong. Declaring the meaning (``kind: referral``) makes it valid."""
    admin = web.sign_in(web.world.admin)
    before = count_rows(web.database, ("protocol_versions",))
    v1 = bundled_specs()[0].text
    renamed = v1.replace("version: 1\n", "version: 3\n").replace("\n  refer:\n", "\n  send_referral:\n")
    renamed = renamed.replace("next: refer\n", "next: send_referral\n")  # the stage's next step follows the name
    r = web.post(admin, "/admin/protocols", {"text": renamed})
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and "govuk-error-summary" in html
    assert "no trigger has kind &#39;referral&#39;" in html and "kind: referral" in html
    assert count_rows(web.database, ("protocol_versions",)) == before and web.rt.engine.versions("sanctions") == [1, 2]

    # The wrong shape: a closure that does not close.
    kinds = {"record_consent_and_risk": "consent", "send_referral": "referral", "escalate": "escalation",
             "record_response": "response", "accept_response": "finding", "close": "closure", "reopen": "reopen"}
    declared = renamed
    for name, kind in kinds.items():
        declared = declared.replace(f"\n  {name}:\n", f"\n  {name}:\n    kind: {kind}\n", 1)
    wrong = declared.replace("  close:\n    kind: closure\n", "  close:\n    kind: response\n", 1)
    html = web.post(admin, "/admin/protocols", {"text": wrong}).get_data(as_text=True)
    assert "triggers.close: a trigger of kind &#39;response&#39; must move the case to an open stage" in html
    assert count_rows(web.database, ("protocol_versions",)) == before
    ok = web.post(admin, "/admin/protocols", {"text": declared})
    assert ok.status_code in (200, 302), ok.get_data(as_text=True)[-2000:]
    assert web.rt.engine.versions("sanctions") == [1, 2, 3]


def test_valid_upload_and_activate_new_cases_use_it(web: Web) -> None:
    from io import BytesIO

    from reprisals.services import open_case

    v3 = bundled_specs()[0].text.replace("version: 1", "version: 3", 1).replace(
        "title: Sanctions protocol", "title: Sanctions protocol v3", 1)
    admin = web.sign_in(web.world.admin)
    page = admin.get("/admin/protocols").get_data(as_text=True)
    r = admin.post("/admin/protocols", data={"csrf_token": csrf_token(page),
                                             "file": (BytesIO(v3.encode()), "sanctions-v3.yaml")},
                   content_type="multipart/form-data")
    assert r.status_code == 302, r.get_data(as_text=True)[:3000]
    assert count_rows(web.database, ("protocol_versions",)) == {"protocol_versions": 1}
    assert 3 in web.rt.engine.versions("sanctions")

    def new_case_version() -> int:
        with web.database.session() as s:
            lead = s.scalars(sa.select(User).where(User.email == web.world.lead)).one()
            est = s.get(Establishment, web.world.establishment_id)
            case = open_case(s, web.rt.engine, cipher(), lead, web.clock.now(), case_data(est))
            s.commit()
            return case.instance.spec_version

    assert new_case_version() == 2  # stored, not active yet: the newest shipped
    r = web.post(admin, "/admin/protocols/sanctions/3/activate", {}, form_page="/admin/protocols")
    assert r.status_code == 302
    assert new_case_version() == 3
    with web.database.session() as s:
        old = s.scalars(sa.select(Case).where(Case.reference == web.world.reported)).one()
        assert old.instance.spec_version == 2  # a running case keeps its version
    assert web.sign_in(web.world.lead).get(f"/cases/{web.world.reported}").status_code == 200
    # another process (started before the upload, so knowing only the shipped version) reads the stored
    # version when it first meets a case on it
    from reprisals.config import load_settings
    from reprisals.runtime import Runtime
    from tests.web.conftest import settings_env

    rt2 = Runtime.from_settings(load_settings(settings_env(web.database, web.rt.settings.instance_path.parent),
                                              dotenv=None))
    try:
        assert rt2.engine.versions("sanctions") == [1, 2]
        with rt2.sessions() as s:
            newest = s.scalars(sa.select(Case).order_by(Case.id.desc())).first()
            assert newest is not None and newest.instance.spec_version == 3
            assert rt2.engine.spec_of(newest.instance).version == 3
        assert rt2.engine.versions("sanctions") == [1, 2, 3]
    finally:
        rt2.close()
    # back to the shipped version
    web.post(admin, "/admin/protocols/sanctions/2/activate", {}, form_page="/admin/protocols")
    assert new_case_version() == 2


def test_failed_messages_are_listed(web: Web) -> None:
    now = web.clock.now()
    with web.database.session() as s:
        s.add(OutboxMessage(idempotency_key="timer:9:reminder:3", channel="email", recipient="someone@example.test",
                            template="reminder", context={}, status=FAILED, attempts=8, created_at=now,
                            next_attempt_at=now, last_error="TemporaryFailure: 421 try later"))
        s.commit()
    html = web.sign_in(web.world.admin).get("/admin/failed-messages").get_data(as_text=True)
    for text in ("timer:9:reminder:3", "someone@example.test", "421 try later", ">8<", "reminder"):
        assert text in html


def test_invitation_page_with_a_bad_token(web: Web) -> None:
    assert web.client().get("/invitation/not-a-token").status_code == 404
    assert PASSWORD


def test_an_admin_sees_and_revokes_a_users_api_tokens_and_nobody_else_can(web: Web) -> None:
    lead = _user(web, web.world.lead)
    staff = _user(web, web.world.staff)
    assert lead is not None and staff is not None
    with web.database.session() as s:
        owner = s.get(User, lead.id)
        assert owner is not None
        row, secret = create_token(s, owner, "weekly figures", web.clock.now())
        token_id = row.id
        s.commit()
    admin = web.sign_in(web.world.admin)
    page = admin.get(f"/admin/users/{lead.id}").get_data(as_text=True)
    assert "weekly figures" in page and secret not in page
    assert f"/admin/users/{lead.id}/tokens/{token_id}/revoke" in page
    assert "has no API tokens" in admin.get(f"/admin/users/{staff.id}").get_data(as_text=True)

    # Not under another user's address, not by a non-admin, not without CSRF: nothing changes.
    wrong = web.post(admin, f"/admin/users/{staff.id}/tokens/{token_id}/revoke", {},
                     form_page=f"/admin/users/{lead.id}")
    assert wrong.status_code == 404
    assert admin.post(f"/admin/users/{lead.id}/tokens/{token_id}/revoke", data={}).status_code == 400
    as_lead = web.sign_in(web.world.lead)
    assert web.post(as_lead, f"/admin/users/{lead.id}/tokens/{token_id}/revoke", {},
                    form_page="/account/").status_code == 403
    with web.database.session() as s:
        assert user_for_token(s, secret, web.clock.now()) is not None

    done = web.post(admin, f"/admin/users/{lead.id}/tokens/{token_id}/revoke", {}, form_page=f"/admin/users/{lead.id}")
    assert done.status_code == 302 and done.headers["Location"].endswith(f"/admin/users/{lead.id}#tokens")
    after = admin.get(f"/admin/users/{lead.id}").get_data(as_text=True)
    assert "’s token “weekly figures” has been revoked" in after and "Revoked" in after  # noqa: RUF001
    with web.database.session() as s:
        assert user_for_token(s, secret, web.clock.now()) is None
