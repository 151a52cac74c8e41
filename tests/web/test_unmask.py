"""Unmasking with approval (reprisals.unmasking, decision 27): an auditor asks with a reason, a lead of the owning
body (not the requester) approves or refuses with a reason, an approval grants one view within 24 hours; each
step a history event and an access-log entry without identity; leads told; who has seen lists the view."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from reprisals.errors import CaseNotFound, InvalidInput, NotAllowed
from reprisals.models import Case, Role, User
from reprisals.sensitive import read_sensitive, who_has_seen
from reprisals.unmasking import (
    APPROVED,
    REFUSED,
    REQUESTED,
    VIEWED,
    UnmaskRequest,
    decide_unmask,
    open_requests_for_lead,
    request_unmask,
    requests_of,
    view_unmasked,
)
from tests.conftest import ONE_DATABASE
from tests.factories import CANARY_DOB, CANARY_NAME, CANARY_NUMBER, make_user
from tests.web.conftest import Web, csrf_token, password_hash

IDENTITY = (CANARY_NAME, CANARY_NUMBER, CANARY_DOB)
ASK = "Checking a pattern across cases ASKCANARY"
YES = "Agreed for the annual review YESCANARY"
# The rules of one request are row logic: the tests that write history, the access log and the outbox run on
# both databases; the others, and the pages, on one.


def _user(s: Any, email: str) -> User:
    return s.scalars(sa.select(User).where(User.email == email)).one()


def _case(s: Any, ref: str) -> Case:
    return s.scalars(sa.select(Case).where(Case.reference == ref)).one()


def _extra(web: Web, role: Role, body: str | None) -> str:
    with web.database.session() as s:
        user = make_user(s, role=role, body=body)
        user.password_hash = password_hash()
        s.commit()
        return user.email


def _ask(web: Web, email: str | None = None, reason: str | None = ASK) -> int:
    rt = web.rt
    with web.database.session() as s:
        row = request_unmask(s, rt.engine, _user(s, email or web.world.auditor), _case(s, web.world.reported),
                             web.clock.now(), reason=reason, messenger=rt.messenger)
        s.commit()
        return row.id


def _decide(web: Web, request_id: int, approve: bool = True, email: str | None = None,
            reason: str | None = YES) -> None:
    rt = web.rt
    with web.database.session() as s:
        decide_unmask(s, rt.engine, _user(s, email or web.world.lead), _case(s, web.world.reported), web.clock.now(),
                      request_id=request_id, approve=approve, reason=reason, messenger=rt.messenger)
        s.commit()


def _view(web: Web, request_id: int, email: str | None = None) -> Any:
    rt = web.rt
    with web.database.session() as s:
        identity = view_unmasked(s, rt.engine, rt.cipher, _user(s, email or web.world.auditor),
                                 _case(s, web.world.reported), web.clock.now(), request_id=request_id)
        s.commit()
        return identity


def _kinds(web: Web, table: str = "history") -> list[str]:
    if table == "history":
        rows = web.database.raw("SELECT kind FROM wf_history WHERE instance_id = :i AND kind LIKE 'unmask%' "
                                "ORDER BY seq", i=web.world.instance_ids[web.world.reported])
    else:
        rows = web.database.raw("SELECT kind FROM access_log WHERE kind LIKE 'unmask%' ORDER BY id")
    return [r.kind for r in rows]


def _no_secret(text: str) -> None:
    for secret in (*IDENTITY, "ASKCANARY", "YESCANARY"):
        assert secret not in text, secret


# -- the rules ------------------------------------------------------------------------------------


def _refused(who: str, expected: type[Exception], call: Any) -> Exception:
    """``call()`` raises ``expected``; a failure names ``who`` (the cases share one world: each changes nothing)."""
    try:
        call()
    except expected as caught:
        return caught
    except Exception as other:  # named in the failure
        pytest.fail(f"{who}: refused with {other!r}, not {expected.__name__}")
    pytest.fail(f"{who}: not refused")


def test_only_an_auditor_who_may_see_the_case_can_ask(web: Web) -> None:
    cases = {"staff": (web.world.staff, NotAllowed), "lead": (web.world.lead, NotAllowed),
             "admin": (web.world.admin, CaseNotFound),
             "outside_auditor": (_extra(web, Role.AUDITOR, "PPO"), CaseNotFound),
             # the party body: may see the case, not the identity
             "party_auditor": (_extra(web, Role.AUDITOR, "HMIP"), NotAllowed)}
    for who, (email, expected) in cases.items():
        _refused(who, expected, lambda email=email: _ask(web, email))
        assert _kinds(web) == [] and _kinds(web, "log") == [], who


def test_a_missing_or_long_reason_is_refused_and_nothing_is_written(web: Web) -> None:
    for reason in (None, "", "   ", "x" * 501):
        caught = _refused(repr(reason)[:12], InvalidInput, lambda reason=reason: _ask(web, reason=reason))
        assert isinstance(caught, InvalidInput) and "reason" in caught.errors
        assert _kinds(web) == [] and _kinds(web, "log") == []
        assert web.database.raw("SELECT count(*) AS n FROM unmask_requests")[0].n == 0
        assert web.database.raw("SELECT count(*) AS n FROM outbox WHERE template = 'unmask_requested'")[0].n == 0


@ONE_DATABASE
def test_one_open_request_per_auditor_and_case(web: Web) -> None:
    first = _ask(web)
    with pytest.raises(InvalidInput, match="already asked"):
        _ask(web)
    _decide(web, first, approve=False)
    _ask(web)  # a refused request is closed: a new one may be asked


def test_only_a_lead_of_the_owning_body_other_than_the_requester_decides(web: Web) -> None:
    rid = _ask(web)
    # another body's lead may not see the case at all; the world's staff is assigned, so sees it
    cases = {"requester": (web.world.auditor, NotAllowed), "party_lead": (_extra(web, Role.LEAD, "HMIP"), NotAllowed),
             "staff": (web.world.staff, NotAllowed), "outside_lead": (web.world.outside_lead, CaseNotFound),
             "second_auditor": (_extra(web, Role.AUDITOR, "IMB"), NotAllowed)}
    for who, (email, expected) in cases.items():
        _refused(who, expected, lambda email=email: _decide(web, rid, email=email))
        assert _kinds(web) == ["unmask_requested"], who


@ONE_DATABASE
def test_a_lead_who_is_the_requester_cannot_decide(web: Web) -> None:
    """An account that asked and then became a lead of the body still cannot decide its own request."""
    rid = _ask(web)
    with web.database.session() as s:
        user = _user(s, web.world.auditor)
        user.role = Role.LEAD
        s.commit()
    with pytest.raises(NotAllowed, match="your own request"):
        _decide(web, rid, email=web.world.auditor)


@ONE_DATABASE
def test_a_decided_request_cannot_be_decided_again(web: Web) -> None:
    rid = _ask(web)
    _decide(web, rid, approve=False)
    with pytest.raises(NotAllowed, match="decided already"):
        _decide(web, rid, email=web.world.second_lead)
    with pytest.raises(InvalidInput):
        _decide(web, _ask(web), reason="")


def test_an_approval_gives_one_view_within_24_hours(web: Web) -> None:
    rid = _ask(web)
    with pytest.raises(NotAllowed, match="not been decided"):
        _view(web, rid)
    _decide(web, rid)
    with pytest.raises(NotAllowed):
        _view(web, rid, email=_extra(web, Role.AUDITOR, "IMB"))  # another auditor
    web.clock.advance(timedelta(hours=23))
    identity = _view(web, rid)
    assert (identity.name, identity.number, identity.date_of_birth) == IDENTITY
    with pytest.raises(NotAllowed, match="already seen"):
        _view(web, rid)
    with web.database.session() as s:
        assert s.get(UnmaskRequest, rid).status == VIEWED  # type: ignore[union-attr]
    assert _kinds(web) == ["unmask_requested", "unmask_approved", "unmask_viewed"]
    assert _kinds(web, "log") == ["unmask_requested", "unmask_approved", "unmask_viewed"]


@ONE_DATABASE
def test_a_view_after_24_hours_is_refused(web: Web) -> None:
    rid = _ask(web)
    _decide(web, rid)
    web.clock.advance(timedelta(hours=24, seconds=1))
    with pytest.raises(NotAllowed, match="ran out at"):
        _view(web, rid)
    assert _kinds(web) == ["unmask_requested", "unmask_approved"]
    _ask(web)  # an expired approval is no longer open


@ONE_DATABASE
def test_a_refused_request_gives_no_view(web: Web) -> None:
    rid = _ask(web)
    _decide(web, rid, approve=False)
    with pytest.raises(NotAllowed, match="refused"):
        _view(web, rid)
    with web.database.session() as s:
        assert s.get(UnmaskRequest, rid).status == REFUSED  # type: ignore[union-attr]


# -- what is written ------------------------------------------------------------------------------


def test_history_and_log_hold_no_identity_and_the_reasons_sealed(web: Web) -> None:
    rid = _ask(web)
    _decide(web, rid)
    _view(web, rid)
    history = web.database.raw("SELECT kind, data FROM wf_history WHERE kind LIKE 'unmask%' ORDER BY seq")
    for row in history:
        text = row.data if isinstance(row.data, str) else json.dumps(row.data)
        _no_secret(text)
        if row.kind != "unmask_viewed":
            assert "$sealed" in text
    for row in web.database.raw("SELECT kind, detail FROM access_log WHERE kind LIKE 'unmask%'"):
        _no_secret(row.detail if isinstance(row.detail, str) else json.dumps(row.detail))


def test_the_owning_bodys_confirmed_leads_are_told_without_identity_or_reason(web: Web) -> None:
    pending = _extra(web, Role.LEAD, "IMB")
    with web.database.session() as s:
        _user(s, pending).confirmed_at = None
        s.commit()
    _ask(web)
    rows = web.database.raw("SELECT o.channel, o.recipient, o.context FROM outbox o "
                            "WHERE o.template = 'unmask_requested'")
    with web.database.session() as s:
        expected = {str(_user(s, e).id) for e in (web.world.lead, web.world.second_lead)}
        auditor = _user(s, web.world.auditor)
    assert {r.recipient for r in rows} == expected and {r.channel for r in rows} == {"inapp"}
    for r in rows:
        context = r.context if isinstance(r.context, dict) else json.loads(r.context)
        assert context["requested_by"] == auditor.name and context["reference"] == web.world.reported
        _no_secret(json.dumps(context))


@ONE_DATABASE
def test_the_requester_is_told_of_the_decision(web: Web) -> None:
    rid = _ask(web)
    _decide(web, rid)
    with web.database.session() as s:
        auditor = _user(s, web.world.auditor)
    rows = web.database.raw("SELECT recipient, context FROM outbox WHERE template = 'unmask_decided'")
    assert [r.recipient for r in rows] == [str(auditor.id)]
    _no_secret(json.dumps(rows[0].context if isinstance(rows[0].context, dict) else json.loads(rows[0].context)))


@ONE_DATABASE
def test_who_has_seen_lists_the_view_and_who_approved_it(web: Web) -> None:
    rid = _ask(web)
    _decide(web, rid)
    _view(web, rid)
    rt = web.rt
    with web.database.session() as s:
        lead, case = _user(s, web.world.lead), _case(s, web.world.reported)
        view = read_sensitive(s, rt.cipher, lead, case, web.clock.now(), via="web", what="test")
        seen = who_has_seen(s, view, case)
        assert len(seen) == 1
        item = seen[0]
        assert item.through_request and item.user_id == _user(s, web.world.auditor).id
        assert item.approved_by == lead.id and item.reason is None and item.reason_given


@ONE_DATABASE
def test_the_lists_for_the_pages(web: Web) -> None:
    rid = _ask(web)
    with web.database.session() as s:
        lead, auditor = _user(s, web.world.lead), _user(s, web.world.auditor)
        assert [r.id for r, _ in open_requests_for_lead(s, lead)] == [rid]
        assert open_requests_for_lead(s, _user(s, web.world.outside_lead)) == []
        assert [(r.id, r.status) for r, _ in requests_of(s, auditor)] == [(rid, REQUESTED)]
    _decide(web, rid)
    with web.database.session() as s:
        assert open_requests_for_lead(s, _user(s, web.world.lead)) == []
        assert [r.status for r, _ in requests_of(s, _user(s, web.world.auditor))] == [APPROVED]


# -- the pages ------------------------------------------------------------------------------------


def _page(client: FlaskClient, path: str, status: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status, (path, response.status_code)
    return response.get_data(as_text=True)


@ONE_DATABASE
def test_the_pages_from_request_to_one_view(web: Web) -> None:
    ref = web.world.reported
    auditor = web.sign_in(web.world.auditor)
    case_page = _page(auditor, f"/cases/{ref}")
    assert 'id="unmask"' in case_page and f"/cases/{ref}/unmask" in case_page

    empty = web.post(auditor, f"/cases/{ref}/unmask", {"reason": ""})
    assert empty.status_code == 200
    assert "govuk-error-summary" in empty.get_data(as_text=True)
    assert "Enter why you need to see who this person is" in empty.get_data(as_text=True)
    long = web.post(auditor, f"/cases/{ref}/unmask", {"reason": "x" * 501})
    assert "500 characters or fewer" in long.get_data(as_text=True)
    assert _kinds(web) == []

    sent = web.post(auditor, f"/cases/{ref}/unmask", {"reason": ASK})
    assert sent.status_code == 302 and sent.headers["Location"].endswith("#unmask")
    _no_secret(sent.headers["Location"])
    page = _page(auditor, f"/cases/{ref}")
    assert "Waiting for a lead to decide" in page
    assert "/view" not in page.split('id="unmask"', 1)[1].split('id="actions"', 1)[0]

    lead = web.sign_in(web.world.lead)
    lead_page = _page(lead, f"/cases/{ref}")
    with web.database.session() as s:
        rid = s.scalars(sa.select(UnmaskRequest.id)).one()
    assert f"/cases/{ref}/unmask/{rid}/decide" in lead_page
    assert "request to see who the person is" in _page(lead, "/").lower()
    assert f"/cases/{ref}/unmask/{rid}/decide" in _page(lead, "/unmask-requests")
    decide = f"/cases/{ref}/unmask/{rid}/decide"
    assert "ASKCANARY" in _page(lead, decide)  # the lead deciding reads the reason
    blank = web.post(lead, decide, {"reason": ""})
    assert "govuk-error-summary" in blank.get_data(as_text=True)
    assert "Select whether you approve or refuse the request" in blank.get_data(as_text=True)
    _page(auditor, decide, 403)
    done = web.post(lead, decide, {"decision": "approve", "reason": YES})
    assert done.status_code == 302

    page = _page(auditor, f"/cases/{ref}")
    assert "Approved: you can see it once" in page and "YESCANARY" in page  # the decision's reason, for the requester
    for secret in IDENTITY:
        assert secret not in page
    view = f"/cases/{ref}/unmask/{rid}/view"
    token = csrf_token(page)
    first = auditor.post(view, data={"csrf_token": token})
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-store"
    body = first.get_data(as_text=True)
    assert all(secret in body for secret in IDENTITY) and "shown once" in body
    again = auditor.post(view, data={"csrf_token": token})
    assert again.status_code == 409 and "already seen" in again.get_data(as_text=True)
    for secret in IDENTITY:
        assert secret not in again.get_data(as_text=True)
    assert "Approved and seen" in _page(auditor, "/unmask-requests")

    seen = _page(lead, f"/cases/{ref}/timeline").split('id="seen"', 1)[1]
    assert "through an approved request" in seen
    timeline = _page(lead, f"/cases/{ref}/timeline")
    for words in ("Asked to see who the person is", "Request to see who the person is approved",
                  "Saw who the person is (approved request)"):
        assert words in timeline


@ONE_DATABASE
def test_the_pages_refuse_others(web: Web) -> None:
    ref = web.world.reported
    lead = web.sign_in(web.world.lead)
    _page(lead, f"/cases/{ref}/unmask", 403)
    staff = web.sign_in(web.world.staff)
    _page(staff, f"/cases/{ref}/unmask", 403)
    _page(staff, "/unmask-requests", 403)
    rid = _ask(web)
    outside = web.sign_in(web.world.outside_lead)
    _page(outside, f"/cases/{ref}/unmask/{rid}/decide", 404)
    _page(lead, f"/cases/{ref}/unmask/{rid + 1}/decide", 404)
    auditor = web.sign_in(web.world.auditor)
    page = _page(auditor, f"/cases/{ref}")
    early = auditor.post(f"/cases/{ref}/unmask/{rid}/view", data={"csrf_token": csrf_token(page)})
    assert early.status_code == 409 and "not been decided" in early.get_data(as_text=True)
