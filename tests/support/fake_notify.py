"""A local stand-in for GOV.UK Notify's ``POST /v2/notifications/email``, on 127.0.0.1 in a thread,
for the real ``notifications-python-client`` to talk to through its ``base_url``.

It checks what Notify checks before sending: the bearer JWT (HS256, ``iss`` the service id, signed
with the key's secret, ``iat`` within 30 s), the JSON body (an e-mail address, a known template id,
the template's personalisation fields) — and answers as Notify does: 201 with the notification, or
``{"errors": [{"error": ..., "message": ...}], "status_code": ...}``. ``fail_next(status)`` makes
the next requests fail with 400, 429 or 500 as Notify would. ``received`` holds the accepted bodies.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt

HOST = "127.0.0.1"
FIELDS = ("subject", "body", "link")  # the personalisation our Notify templates use
ERRORS = {
    400: ("BadRequestError", "Can't send to this recipient using a team-only API key"),
    403: ("AuthError", "Invalid token: API key not found"),
    429: ("RateLimitError", "Exceeded rate limit for key type LIVE of 3000 requests per 60 seconds"),
    500: ("Exception", "Internal server error"),
}


@dataclass
class Call:
    """One request as the server saw it (accepted or not)."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    status: int


@dataclass
class FakeNotify:
    service_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    secret: str = field(default_factory=lambda: str(uuid.uuid4()))
    template_ids: set[str] = field(default_factory=set)
    calls: list[Call] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    _failures: deque[int] = field(default_factory=deque)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def api_key(self) -> str:
        """A key in Notify's format: ``{name}-{service id}-{secret}``."""
        return f"reprisals_test-{self.service_id}-{self.secret}"

    @property
    def base_url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://{HOST}:{self._server.server_address[1]}"

    def add_template(self) -> str:
        template_id = str(uuid.uuid4())
        self.template_ids.add(template_id)
        return template_id

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer the next ``times`` authorised requests with ``status`` (400, 403, 429 or 500)."""
        assert status in ERRORS
        self._failures.extend([status] * times)

    # -- the endpoint -----------------------------------------------------------------------------

    def _check_token(self, headers: dict[str, str]) -> tuple[int, str] | None:
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return 401, "Unauthorized: authentication token must be provided"
        token = auth.removeprefix("Bearer ")
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, self.secret, algorithms=["HS256"], options={"verify_iat": False})
        except jwt.InvalidTokenError:
            return 403, "Invalid token: signature, api token not found"
        if header.get("typ") != "JWT" or header.get("alg") != "HS256":
            return 403, "Invalid token: algorithm used is not HS256"
        if claims.get("iss") != self.service_id:
            return 403, "Invalid token: service not found"
        if abs(time.time() - float(claims.get("iat", 0))) > 30:
            return 403, "Error: Your system clock must be accurate to within 30 seconds"
        return None

    def _answer(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any]]:
        if path != "/v2/notifications/email":
            return _error(404, "BadRequestError", "Resource not found")
        problem = self._check_token(headers)
        if problem:
            return _error(problem[0], "AuthError", problem[1])
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
        if failure is not None:
            return _error(failure, *ERRORS[failure])
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "BadRequestError", "Invalid JSON supplied in POST data")
        problems = []
        if "@" not in str(body.get("email_address", "")):
            problems.append("email_address Not a valid email address")
        if body.get("template_id") not in self.template_ids:
            problems.append("Template not found")
        missing = [f for f in FIELDS if f not in (body.get("personalisation") or {})]
        if missing:
            problems.append(f"Missing personalisation: {', '.join(missing)}")
        if problems:
            return 400, {"errors": [{"error": "ValidationError" if "Not a valid" in p else "BadRequestError",
                                     "message": p} for p in problems], "status_code": 400}
        with self._lock:
            self.received.append(body)
        notification_id = str(uuid.uuid4())
        personalisation = body["personalisation"]
        return 201, {
            "id": notification_id, "reference": body.get("reference"),
            "content": {"subject": personalisation["subject"], "body": personalisation["body"],
                        "from_email": "reprisals@notifications.service.gov.uk", "one_click_unsubscribe_url": None},
            "uri": f"{self.base_url}/v2/notifications/{notification_id}",
            "template": {"id": body["template_id"], "version": 1,
                         "uri": f"{self.base_url}/services/{self.service_id}/templates/{body['template_id']}"},
            "scheduled_for": None,
        }

    # -- the server -------------------------------------------------------------------------------

    def start(self) -> FakeNotify:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                raw = self.rfile.read(int(headers.get("content-length", "0") or 0))
                status, payload = fake._answer(self.path, headers, raw)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                with fake._lock:
                    fake.calls.append(Call(self.path, headers, body, status))
                out = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                return None

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeNotify:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _error(status: int, error: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"errors": [{"error": error, "message": message}], "status_code": status}
