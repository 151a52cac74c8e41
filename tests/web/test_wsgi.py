"""The production entry point: gunicorn serves ``web.wsgi:app`` (a real server process on loopback)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import Database
from tests.web.conftest import base_env, clean_environ


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_gunicorn_serves_the_app_with_two_workers(database: Database, tmp_path: Path) -> None:
    port = _free_port()
    env = {**clean_environ(), **base_env(database.url, tmp_path)}
    gunicorn = Path(sys.executable).with_name("gunicorn")
    proc = subprocess.Popen([str(gunicorn), "-w", "2", "-b", f"127.0.0.1:{port}", "web.wsgi:app"],
                            env={**env, "PYTHONPATH": os.getcwd()}, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        body = b""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    body = r.read()
                    break
            except OSError:
                time.sleep(0.3)
        assert b'"database":"ok"' in body.replace(b" ", b"")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/sign-in", timeout=5) as r:
            assert r.status == 200 and b"Sign in" in r.read()
    finally:
        proc.terminate()
        proc.wait(10)
