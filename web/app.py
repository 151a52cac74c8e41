"""The Flask application factory. It wires the runtime and registers routes; it never migrates the
database, starts a scheduler or does network I/O (those are commands)."""

from __future__ import annotations

from typing import Any

from flask import Flask, g, render_template
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from reprisals.config import Settings, load_settings
from reprisals.models import Case
from reprisals.runtime import Runtime


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    settings = settings or (runtime.settings if runtime else load_settings())
    rt = runtime or Runtime.from_settings(settings)
    app = Flask(__name__, instance_path=str(settings.instance_path), instance_relative_config=False)
    app.config.update(SECRET_KEY=settings.secret_key, SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=settings.is_production)
    app.extensions["reprisals"] = rt

    def db() -> Session:
        if "db" not in g:
            g.db = rt.sessions()
        session: Session = g.db
        return session

    @app.teardown_appcontext
    def _close(_exc: BaseException | None) -> None:
        session = g.pop("db", None)
        if session is not None:
            session.rollback()
            session.close()

    @app.get("/")
    def index() -> str:
        # A stand-in until the full UI: references, stages and risk only; never identity.
        cases = db().scalars(select(Case).order_by(Case.received_at.desc())).all()
        return render_template("index.html", cases=cases)

    @app.get("/healthz")
    def healthz() -> tuple[dict[str, Any], int]:
        try:
            db().execute(text("SELECT 1"))
        except Exception:  # any database failure means unhealthy; the message stays generic
            return {"status": "error", "database": "unreachable"}, 503
        return {"status": "ok", "database": "ok"}, 200

    return app
