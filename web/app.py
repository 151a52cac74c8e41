"""The Flask application factory. It wires the runtime and registers routes; it never migrates the
database, starts a scheduler or does network I/O (those are commands)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from flask import Flask, g, make_response, render_template, request, session
from flask.typing import ResponseReturnValue
from flask_login import AnonymousUserMixin, LoginManager
from flask_wtf.csrf import CSRFError, CSRFProtect
from govuk_frontend_wtf.main import WTFormsHelpers
from jinja2 import ChoiceLoader, PackageLoader, PrefixLoader
from sqlalchemy import exc as sa_exc
from werkzeug.middleware.proxy_fix import ProxyFix

from notifications.outbox import unread_count
from notifications.templates import CompiledTemplates
from reprisals.accounts import heartbeat_age, load_session
from reprisals.config import Settings, load_settings
from reprisals.errors import CaseNotFound
from reprisals.models import Role
from reprisals.readside.lookups import ping
from reprisals.runtime import Runtime
from web import (
    access_log,
    account,
    admin,
    api,
    auth,
    case_page,
    confirmations,
    home,
    inbox,
    people,
    protocol_page,
    report,
    reports,
    two_factor,
    unmask,
)
from web.context import Principal, db, me, now
from web.security import add_security_headers, csp_nonce, enforce, public

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 30
HSTS = "max-age=31536000; includeSubDomains"
SERVICE_NAME = "Reprisals case tracker"


# Every app of the process is configured alike, so they share compiled templates (the tests make one a test).
COMPILED_TEMPLATES = CompiledTemplates()
# report.bp is cases.bp: the list (web/cases.py) and the report flow (web/report.py) share /cases.
BLUEPRINTS = (auth.bp, home.bp, report.bp, case_page.bp, inbox.bp, reports.bp, account.bp, admin.bp,
              admin.invitation_bp, access_log.bp, confirmations.bp, api.bp, two_factor.bp, people.bp, unmask.bp,
              protocol_page.bp)  # the protocol page: issue 14, part deadlines


def create_app(settings: Settings | None = None, runtime: Runtime | None = None, *,
               testing: bool = False) -> Flask:
    settings = settings or (runtime.settings if runtime else load_settings())
    rt = runtime or Runtime.from_settings(settings)
    app = Flask(__name__, instance_path=str(settings.instance_path), instance_relative_config=False)
    app.config.update(
        SECRET_KEY=settings.secret_key, TESTING=testing,
        SESSION_COOKIE_NAME="reprisals_session", SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production, REMEMBER_COOKIE_SECURE=True,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the (server-side) session
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
    )
    app.extensions["reprisals"] = rt
    if settings.trusted_proxies:
        # The client address is the one the outermost trusted proxy saw (the N-th X-Forwarded-For value
        # from the right); values a client sent are to the left of it and never read. Not X-Forwarded-Host:
        # a proxy that does not set it would let the client choose the Host.
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]
    app.jinja_loader = ChoiceLoader([
        PackageLoader("web"),
        PrefixLoader({"govuk_frontend_jinja": PackageLoader("govuk_frontend_jinja"),
                      "govuk_frontend_wtf": PackageLoader("govuk_frontend_wtf")}),
    ])
    app.jinja_env.trim_blocks = app.jinja_env.lstrip_blocks = True  # every app alike: they share compiled code
    app.jinja_env.bytecode_cache = COMPILED_TEMPLATES
    WTFormsHelpers(app)
    csrf = CSRFProtect(app)
    csrf.exempt(api.bp)  # bearer tokens, no cookies: nothing for a forged request to ride on

    login = LoginManager(app)
    login.login_view = "auth.sign_in"
    login.login_message = "Sign in to continue."
    login.login_message_category = "info"
    login.session_protection = None  # not a control (it hashes client headers); sessions are server-side

    @login.user_loader
    def _load(token: str) -> Principal | None:
        row = load_session(db(), token, now())
        if row is None or db().dirty:
            db().commit()  # touched, or ended (with its draft: that delete already flushed the end)
        return Principal(row, token) if row is not None else None

    for bp in BLUEPRINTS:
        app.register_blueprint(bp)
    app.before_request(enforce(app))
    app.after_request(add_security_headers)
    if settings.is_production:
        @app.after_request
        def _hsts(response: Any) -> Any:
            # Production is served over TLS only (README): browsers refuse plain HTTP for a year.
            response.headers["Strict-Transport-Security"] = HSTS
            return response

    @app.teardown_appcontext
    def _close(_exc: BaseException | None) -> None:
        s = g.pop("db", None)
        if s is not None:
            s.rollback()
            s.close()

    @app.context_processor
    def _globals() -> dict[str, Any]:
        from flask_login import current_user

        # Once per request: every GOV.UK widget renders its own template through this processor.
        if "unread_count" not in g:
            g.unread_count = unread_count(db(), str(me().id)) if current_user.is_authenticated else 0
        unread = g.unread_count
        return {"serviceName": SERVICE_NAME, "cspNonce": csp_nonce(), "assetPath": "/static/govuk/assets",
                "unread_count": unread, "Role": Role}

    def _heartbeat() -> tuple[float | None, float]:
        """The scheduler heartbeat's age (``None``: never) and the age past which it counts as stopped:
        three sweep intervals. Raises if the database cannot be read."""
        ping(db())
        return heartbeat_age(db(), "scheduler", now()), 3.0 * rt.settings.scheduler_interval

    @app.get("/healthz")
    @public
    def healthz() -> tuple[dict[str, Any], int]:
        """503 only when the database is unreachable; a stale scheduler is reported, not failed
        (``/healthz/scheduler`` fails on it), so a load balancer keeps the pages up without it."""
        try:
            age, limit = _heartbeat()
        except Exception:  # any database failure means unhealthy; the message stays generic
            log.exception("health check: database unreachable")
            return {"status": "error", "database": "unreachable"}, 503
        body: dict[str, Any] = {"status": "ok", "database": "ok",
                                "scheduler_heartbeat_age_seconds": None if age is None else round(age, 1)}
        if age is None or age > limit:
            body["scheduler"] = "no recent heartbeat"
        return body, 200

    @app.get("/healthz/scheduler")
    @public
    def healthz_scheduler() -> tuple[dict[str, Any], int]:
        """503 when no scheduler has swept within three intervals (or the database is unreachable)."""
        try:
            age, limit = _heartbeat()
        except Exception:
            log.exception("health check: database unreachable")
            return {"status": "error", "database": "unreachable"}, 503
        body: dict[str, Any] = {"scheduler_heartbeat_age_seconds": None if age is None else round(age, 1),
                                "limit_seconds": limit}
        if age is None or age > limit:
            return {"status": "error", "scheduler": "no recent heartbeat", **body}, 503
        return {"status": "ok", "scheduler": "ok", **body}, 200

    def _page(status: int, title: str, message: str) -> tuple[str, int]:
        if request.path.startswith("/api/"):
            from web.api import problem

            return problem(status, title, message)  # type: ignore[return-value]
        return render_template("errors/error.html", title=title, message=message), status

    @app.errorhandler(CaseNotFound)
    @app.errorhandler(404)
    def _not_found(_e: Exception) -> tuple[str, int]:
        return _page(404, "Page not found", "If you typed the web address, check it is correct. "
                     "If you followed a link to a case, you may not have access to it.")

    @app.errorhandler(403)
    def _forbidden(_e: Exception) -> tuple[str, int]:
        return _page(403, "You cannot do that", "Your role does not allow this action.")

    @app.errorhandler(405)
    def _method(_e: Exception) -> tuple[str, int]:
        return _page(405, "That cannot be done here", "This address does not accept that kind of request.")

    @app.errorhandler(413)
    def _too_big(_e: Exception) -> tuple[str, int]:
        return _page(413, "That is too large", "The request was larger than 2 MB.")

    @app.errorhandler(CSRFError)
    def _csrf(_e: CSRFError) -> tuple[str, int]:
        return _page(400, "Your form could not be sent",
                     "The page was out of date or was not sent from this service. Go back, reload the page and try "
                     "again. Nothing was saved.")

    @app.errorhandler(sa_exc.OperationalError)
    @app.errorhandler(sa_exc.InterfaceError)
    @app.errorhandler(sa_exc.TimeoutError)  # no connection free in the pool
    def _database_unavailable(exc: Exception) -> ResponseReturnValue:
        """The database cannot be reached (down, restarting, the connection cut): 503 with Retry-After,
        never 500. The transaction was not committed (a view commits last and builds its answer
        first), so nothing was saved. The error page itself must not touch the database."""
        log.error("database unavailable during %s %s: %s", request.method, request.path, type(exc).__name__)
        stale = g.pop("db", None)
        if stale is not None:
            with contextlib.suppress(Exception):
                stale.close()
        g.unread_count = 0
        if not hasattr(g, "_login_user"):
            g._login_user = AnonymousUserMixin()  # the page shows no account links rather than asking the database
        elif isinstance(g._login_user, Principal) and not hasattr(g._login_user, "_second_step"):
            g._login_user._second_step = "code"  # nor asks it whether the second step was given
        response = make_response(_page(503, "Sorry, there is a problem with the service",
                                       "Nothing was saved. Try again in a few minutes."))
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    @app.errorhandler(500)
    def _error(_e: Exception) -> tuple[str, int]:
        return _page(500, "Sorry, there is a problem with the service", "Nothing was saved. Try again later.")

    @app.before_request
    def _no_stale_session() -> None:
        session.permanent = False

    return app
