"""Who may reach which route, safe redirects and the security headers every response carries.

Every view declares its rule with one of the decorators below; a route without one is refused
(fail closed) and ``tests/web/test_permissions.py`` fails, so no route can be added unguarded. The
rules are coarse (signed in, role: an account waiting for a lead's confirmation passes no role rule);
each case is then checked by the services (``get_case`` raises ``CaseNotFound`` for a case the user
may not see, which the views turn into a 404)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from flask import Flask, abort, g, render_template, request
from flask.typing import ResponseReturnValue
from flask_login import current_user

from reprisals.models import Role

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Rule:
    """``public``: anyone; ``api``: a bearer token (checked by the API itself); otherwise signed in,
    and when ``roles`` is set, holding one of them."""

    public: bool = False
    api: bool = False
    roles: frozenset[Role] | None = None
    partial: bool = False  # reachable by a session that has given its password but not its second factor

    def describe(self) -> str:
        if self.public:
            return "public"
        if self.api:
            return "api token"
        if self.partial:
            return "signed in, second step or not"
        return "signed in" + (f" as {'/'.join(sorted(r.value for r in self.roles))}" if self.roles else "")


def _with(rule: Rule) -> Callable[[F], F]:
    def mark(view: F) -> F:
        view.permission = rule  # type: ignore[attr-defined]
        return view
    return mark


public = _with(Rule(public=True))
api_token = _with(Rule(api=True))
signed_in = _with(Rule())
# The second-step pages (and signing out): a session with the password only may reach them, and
# nothing else (web/two_factor.py).
second_step_page = _with(Rule(partial=True))


def roles(*allowed: Role) -> Callable[[F], F]:
    return _with(Rule(roles=frozenset(allowed)))


BUILTIN_PUBLIC = {"static"}


def rule_for(app: Flask, endpoint: str) -> Rule | None:
    if endpoint in BUILTIN_PUBLIC:
        return Rule(public=True)
    view = app.view_functions.get(endpoint)
    return getattr(view, "permission", None)


def enforce(app: Flask) -> Callable[[], ResponseReturnValue | None]:
    from flask import redirect, url_for

    def check() -> ResponseReturnValue | None:
        endpoint = request.endpoint
        if endpoint is None:
            return None  # 404 / 405 follow
        rule = rule_for(app, endpoint)
        if rule is None:
            abort(404)  # fail closed: a route nobody gave a rule is not reachable
        if rule.public or rule.api:
            return None
        if not current_user.is_authenticated:
            return redirect(url_for("auth.sign_in", next=request.full_path.rstrip("?")))
        if not rule.partial and (step := current_user.second_step_due) is not None:
            # The password only: not signed in yet, except for the second step (reprisals.two_factor).
            target = request.full_path.rstrip("?") if request.method == "GET" else None
            return redirect(url_for("two_factor.enrol" if step == "enrol" else "two_factor.code", next=target))
        if rule.roles is not None and current_user.user.role not in rule.roles:
            abort(403)
        if rule.roles is not None and current_user.user.pending:
            # Waiting for a lead of its body (decision 22): no page a role opens, only the signed-in ones
            # (home, account, inbox), and case pages answer 404 through the services.
            return render_template("errors/error.html", title="Your account is waiting for confirmation",
                                   message=pending_words(current_user.user)), 403
        return None

    return check


def pending_words(user: Any) -> str:
    return (f"A lead of {user.body_code} must confirm your account before you can see or report any case. "
            "They have been told; ask one of them if you are waiting.")


def safe_next(target: str | None) -> str | None:
    """``target`` if it is a path on this site, else ``None``. Refuses absolute and scheme-relative
    URLs, backslashes (browsers read ``/\\evil`` as ``//evil``), control characters, ``javascript:``
    and their percent-encoded forms."""
    if not target:
        return None
    for candidate in (target, unquote(target), unquote(unquote(target))):
        if any(c in candidate for c in "\\\r\n\t\x00") or not candidate.startswith("/") or candidate.startswith("//"):
            return None
        parts = urlsplit(candidate)
        if parts.scheme or parts.netloc:
            return None
    return target


def csp_nonce() -> str:
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    nonce: str = g.csp_nonce
    return nonce


def add_security_headers(response: Any) -> Any:
    nonce = g.get("csp_nonce")
    script = f"'self' 'nonce-{nonce}'" if nonce else "'self'"
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src {script}; style-src 'self'; img-src 'self' data:; font-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    response.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    if current_user and current_user.is_authenticated and not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
    return response
