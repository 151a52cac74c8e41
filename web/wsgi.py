"""The WSGI entry point for production servers: ``gunicorn -w 4 'web.wsgi:app'``.

Configuration comes from ``REPRISALS_*`` (see the README). The app factory never starts a
scheduler: run ``reprisals scheduler`` as its own process.
"""

from __future__ import annotations

from web.app import create_app

app = create_app()
