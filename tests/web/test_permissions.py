"""Every route has an explicit permission rule, and the rules hold: anonymous users are sent to sign in,
roles are refused what is not theirs, and a route without a rule is unreachable (fail closed)."""

from __future__ import annotations

import re

import pytest
from flask import Flask

from reprisals.models import Role
from tests.web.conftest import Web
from web.security import rule_for, signed_in


def _routes(app: Flask) -> list[tuple[str, str]]:
    return sorted((r.endpoint, r.rule) for r in app.url_map.iter_rules())


def test_every_route_has_an_explicit_permission_rule(web: Web) -> None:
    missing = [f"{endpoint} {rule}" for endpoint, rule in _routes(web.app) if rule_for(web.app, endpoint) is None]
    assert missing == []
    assert len(_routes(web.app)) > 5


def test_a_route_added_without_a_rule_is_not_reachable_even_signed_in(web: Web) -> None:
    web.app.add_url_rule("/forgotten", "forgotten", lambda: "secret page")
    client = web.sign_in(web.world.lead)
    response = client.get("/forgotten")
    assert response.status_code == 404
    assert b"secret page" not in response.data


def test_only_sign_in_health_static_and_the_api_are_open_without_a_session(web: Web) -> None:
    open_rules = {rule for endpoint, rule in _routes(web.app)
                  if (r := rule_for(web.app, endpoint)) is not None and (r.public or r.api)}
    allowed = {"/sign-in", "/healthz", "/healthz/scheduler", "/static/<path:filename>",
               "/invitation/<token>"}  # the token is the key
    assert {r for r in open_rules if not r.startswith("/api/")} <= allowed


def _concrete(rule: str) -> str:
    return re.sub(r"<(?:[^:>]+:)?[^>]+>", "1", rule)


def test_every_signed_in_route_sends_anonymous_users_to_sign_in(web: Web) -> None:
    client = web.client()
    for endpoint, rule in _routes(web.app):
        r = rule_for(web.app, endpoint)
        assert r is not None
        if r.public or r.api:
            continue
        for method in sorted(m for m in web.app.url_map._rules_by_endpoint[endpoint][0].methods or ()
                             if m in ("GET", "POST")):
            response = client.open(_concrete(rule), method=method)
            # GET: redirected to sign in. POST: refused before anything (CSRF first, or the redirect).
            assert response.status_code in (302, 400), (method, rule, response.status_code)
            if response.status_code == 302:
                assert response.headers["Location"].startswith("/sign-in"), rule


@pytest.mark.parametrize("who", ["auditor", "staff", "lead"])
def test_admin_pages_are_refused_to_other_roles(web: Web, who: str) -> None:
    client = web.sign_in(getattr(web.world, who))
    assert client.get("/admin/").status_code == 403


def test_admins_do_not_see_cases(web: Web) -> None:
    client = web.sign_in(web.world.admin)
    assert client.get("/cases/").status_code == 403


def test_role_rules_are_declared_with_roles() -> None:
    from web import admin

    assert rule_for_view(admin.index).roles == frozenset({Role.ADMIN})
    assert rule_for_view(signed_in(lambda: None)).roles is None


def rule_for_view(view: object) -> object:
    return view.permission  # type: ignore[attr-defined]
