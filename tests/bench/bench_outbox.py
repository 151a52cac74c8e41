"""Benchmark 4: outbox delivery over SMTP — messages per second through ``deliver_due`` against plain
smtplib sending the same messages.

Aim: ``deliver_due`` with the ``SmtpChannel`` delivers at least 0.8x as many messages per second as a
bare smtplib loop.

An SMTP server (aiosmtpd: ``tests.support.smtp_server``) runs as its own process on 127.0.0.1, so it
does not share the client's GIL; each variant gets a fresh one, and its counts (messages accepted,
connections) are checked afterwards. The outbox is an SQLite file made by ``create_db_engine`` (WAL,
``BEGIN IMMEDIATE``, ``synchronous=FULL`` except for the delivery's own transactions, which ask for
``NORMAL``: decision 10) holding the outbox tables, bulk-loaded with Core: ``--messages`` pending
messages (default 10,000), the five shipped templates in turn with their sample contexts, one
recipient each, all due now.

* ``smtplib``, the baseline: the same messages rendered beforehand (not timed), then one connection and
  a loop building the same ``EmailMessage`` as the channel does (From, To, Subject, Message-ID, Date,
  text and HTML parts) and calling ``send_message``;
* ``deliver_due``: ``deliver_due(session, now, {"smtp": SmtpChannel(...)}, message_templates())`` on a
  full outbox: a commit per ``CLAIM_BATCH`` messages (their claim with the previous batch's outcomes),
  and per message the rendering, the e-mail, the send;
* ``deliver_due_pg``: the same with the outbox in a fresh PostgreSQL database (skipped, and said so,
  when PostgreSQL is not reachable); the aim is judged on the SQLite outbox, the default;
* ``bookkeeping``: the same ``deliver_due`` with a channel that sends nothing — what the outbox itself
  costs per message.

Every ``deliver_due`` run must report all messages sent and leave every row ``sent``; each SMTP server
must have accepted exactly the messages of its variant, over one connection. When the aim is missed
(or with ``--profile``) a 1,000-message ``deliver_due`` run is profiled and its time grouped by area.
"""

from __future__ import annotations

import contextlib
import cProfile
import gc
import json
import pstats
import shutil
import smtplib
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from notifications.channels import SmtpChannel, SmtpSettings, message_id
from notifications.models import SENT, OutboxMessage, metadata
from notifications.outbox import CLAIM_BATCH, deliver_due
from notifications.templates import Rendered, Templates
from reprisals.messaging import SAMPLES, message_templates
from tests.bench.bench_sweep import PostgresBackend
from tests.bench.common import Timing, fmt_int, fmt_ratio, table, timed
from workflow.db import create_db_engine

AIM = 0.8
NOW = datetime(2026, 5, 6, 10, 0, tzinfo=UTC)
SENDER = "reprisals@reprisals.bench.invalid"
DOMAIN = "reprisals.bench.invalid"
PROFILE_MESSAGES = 1000
WARM_MESSAGES = 100
ROOT = Path(__file__).resolve().parents[2]

VARIANTS = ("smtplib", "deliver_due", "bookkeeping", "deliver_due_pg")
LABELS = {
    "smtplib": "baseline: smtplib loop, one connection, pre-rendered",
    "deliver_due": "deliver_due + SmtpChannel",
    "bookkeeping": "deliver_due, a channel that sends nothing",
    "deliver_due_pg": "deliver_due + SmtpChannel, PostgreSQL outbox",
}

Log = Callable[[str], None]


# -- the pieces -----------------------------------------------------------------------------------


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[int, dict[str, int]]]:
    """A fresh aiosmtpd process; yields its port and, once it has stopped, fills in its counts."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.smtp_server"], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    counts: dict[str, int] = {}
    try:
        ready = proc.stdout.readline().split()
        assert ready[:1] == ["ready"], f"the SMTP server did not start: {ready}"
        yield int(ready[1]), counts
    finally:
        proc.stdin.close()
        out = proc.stdout.read()
        proc.wait(timeout=60)
        lines = out.strip().splitlines()
        if lines:
            counts.update(json.loads(lines[-1]))


def _filesystem(path: Path) -> str:
    """The type of the filesystem holding ``path`` (tmpfs would make every fsync free)."""
    best, kind = "", "unknown"
    with contextlib.suppress(OSError), open("/proc/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            parts = line.split()
            if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    return kind


def _rows(n: int) -> list[dict[str, Any]]:
    names = sorted(SAMPLES)
    return [{"idempotency_key": f"bench:{i}:email", "channel": "smtp", "recipient": f"person{i}@body.example",
             "template": names[i % len(names)], "context": SAMPLES[names[i % len(names)]], "urgent": False,
             "status": "pending", "attempts": 0, "created_at": NOW, "next_attempt_at": NOW} for i in range(n)]


def outbox(directory: Path, n: int, url: str | None = None) -> sa.Engine:
    """A fresh outbox of ``n`` due messages: an SQLite file in ``directory``, or the database at ``url``."""
    path = directory / f"outbox-{n}-{len(list(directory.iterdir()))}.db"
    engine = create_db_engine(url or f"sqlite:///{path}")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(OutboxMessage), _rows(n))
    return engine


def email_for(key: str, recipient: str, created_at: datetime, rendered: Rendered) -> EmailMessage:
    """The e-mail as ``SmtpChannel.send`` builds it."""
    email = EmailMessage()
    email["From"] = SENDER
    email["To"] = recipient
    email["Subject"] = rendered.subject
    email["Message-ID"] = message_id(key, DOMAIN)
    email["Date"] = format_datetime(created_at)
    email.set_content(rendered.text)
    email.add_alternative(rendered.html, subtype="html")
    return email


class NoChannel:
    """Sends nothing: what is left is the outbox's own work."""

    name = "smtp"

    def send(self, session: Session, message: OutboxMessage, rendered: Rendered) -> None:
        return None

    def close(self) -> None:
        return None


# -- the variants ---------------------------------------------------------------------------------


def run_smtplib(n: int, templates: Templates, port: int) -> tuple[int, Timing]:
    prepared = [(r["idempotency_key"], r["recipient"], templates.render(r["template"], r["context"]))
                for r in _rows(n)]
    conn = smtplib.SMTP("127.0.0.1", port, timeout=30)
    conn.ehlo()

    def loop() -> int:
        for key, recipient, rendered in prepared:
            conn.send_message(email_for(key, recipient, NOW, rendered))
        return len(prepared)

    sent, timing = timed(loop)
    conn.quit()
    return sent, timing


def _deliver(engine: sa.Engine, templates: Templates, channel: Any) -> int:
    with sessionmaker(engine, expire_on_commit=False)() as session:  # as Runtime makes them
        result = deliver_due(session, NOW, {"smtp": channel}, templates, limit=10**9)
    assert result.retried == result.failed == 0, result
    return result.sent


def smtp_channel(port: int) -> SmtpChannel:
    return SmtpChannel(SmtpSettings.from_url(f"smtp://127.0.0.1:{port}?starttls=no&timeout=30"), SENDER)


def _check_outbox(engine: sa.Engine, n: int) -> list[str]:
    with engine.connect() as conn:
        counts = dict(conn.execute(sa.select(OutboxMessage.status, sa.func.count()).group_by(OutboxMessage.status)
                                   ).all())
    return [] if counts == {SENT: n} else [f"outbox rows by status {counts}, expected {{'sent': {n}}}"]


def measure(variant: str, n: int, directory: Path, templates: Templates,
            postgres: PostgresBackend | None = None) -> tuple[dict[str, Any], list[str]]:
    problems: list[str] = []
    if variant == "bookkeeping":
        engine = outbox(directory, n)
        sent, timing = timed(lambda: _deliver(engine, templates, NoChannel()))
        problems += _check_outbox(engine, n)
        engine.dispose()
        counts: dict[str, int] = {}
    else:
        with smtp_server() as (port, counts):
            if variant == "smtplib":
                sent, timing = run_smtplib(n, templates, port)
            else:
                url = postgres.create(f"outbox_{n}_{len(postgres.made)}") if variant == "deliver_due_pg" and \
                    postgres is not None else None
                engine = outbox(directory, n, url)
                sent, timing = timed(lambda: _deliver(engine, templates, smtp_channel(port)))
                problems += _check_outbox(engine, n)
                engine.dispose()
                if url is not None and postgres is not None:
                    postgres.drop(url)
        if counts != {"messages": n, "connections": 1}:
            problems.append(f"{variant}: the SMTP server counted {counts}, expected {n} messages on 1 connection")
    if sent != n:
        problems.append(f"{variant}: {sent} sent, expected {n}")
    return {"messages": n, "wall": timing.wall, "cpu": timing.cpu, "rate": n / timing.wall,
            "ms_per_message": 1000 * timing.wall / n, "server": counts}, problems


# -- the profile ----------------------------------------------------------------------------------

_AREAS = [
    ("commit' of 'sqlite3.Connection", "sqlite3 commit (WAL write, fsync)"),
    ("sqlite3", "sqlite3 driver (execute, fetch)"),
    ("sqlalchemy/orm/", "SQLAlchemy ORM (session, unit of work, loading)"),
    ("sqlalchemy/", "SQLAlchemy Core (statements, execution, types, events)"),
    ("recv_into", "waiting for the SMTP server (socket recv)"),
    ("sendall", "socket send"),
    ("/email/", "email package (building and flattening MIME)"),
    ("smtplib", "smtplib"),
    ("jinja2/", "Jinja (rendering)"),
    ("/notifications/", "notifications (outbox, channels, templates)"),
    ("/workflow/", "workflow (db event hooks)"),
]


def _area(key: tuple[str, int, str]) -> str:
    text = f"{key[0]}:{key[2]}"
    for needle, label in _AREAS:
        if needle in text:
            return label
    return "other (stdlib, builtins)"


def profile_delivery(n: int, directory: Path, templates: Templates) -> dict[str, Any]:
    engine = outbox(directory, n)
    with smtp_server() as (port, _counts):
        prof = cProfile.Profile()
        gc.collect()
        prof.enable()
        _deliver(engine, templates, smtp_channel(port))
        prof.disable()
    engine.dispose()
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    areas: dict[str, float] = {}
    for key, (_cc, _nc, tt, _ct, _callers) in raw.items():
        areas[_area(key)] = areas.get(_area(key), 0.0) + tt
    total = sum(areas.values())
    ours = sorted(((f"{Path(k[0]).parent.name}/{Path(k[0]).name}:{k[1]}({k[2]})", v[1], v[3])
                   for k, v in raw.items() if "/notifications/" in k[0]), key=lambda r: -r[2])
    top = sorted(((_short(k), v[1], v[2]) for k, v in raw.items()), key=lambda r: -r[2])
    return {"messages": n, "total_s": total, "areas": sorted(areas.items(), key=lambda a: -a[1]),
            "ours": ours[:12], "top_self": top[:15]}


def _short(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    if filename == "~":
        return name
    for marker in ("site-packages/", "/lib/python3."):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            break
    return f"{filename}:{line}({name})"


# -- the run --------------------------------------------------------------------------------------


def run(messages: int, *, force_profile: bool = False, log: Log = print) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="bench-outbox-"))
    templates = message_templates()
    results: dict[str, Any] = {"messages": messages, "aim": AIM, "filesystem": _filesystem(directory),
                               "batch": CLAIM_BATCH, "variants": {}, "problems": []}
    postgres: PostgresBackend | None = None
    variants = list(VARIANTS)
    try:
        postgres = PostgresBackend()
    except Exception as exc:
        log(f"  PostgreSQL not reachable ({type(exc).__name__}): its variant is left out")
        variants.remove("deliver_due_pg")
    try:
        log(f"  warm-up: {WARM_MESSAGES} messages per variant")
        for variant in variants:
            _, problems = measure(variant, WARM_MESSAGES, directory, templates, postgres)
            results["problems"] += problems
        for variant in variants:
            log(f"  {variant}: {messages:,} messages")
            row, problems = measure(variant, messages, directory, templates, postgres)
            results["variants"][variant] = row
            results["problems"] += problems
            log(f"    {row['rate']:,.0f} messages/s ({row['ms_per_message']:.3f} ms each)")
        v = results["variants"]
        results["ratio"] = v["deliver_due"]["rate"] / v["smtplib"]["rate"]
        results["ok"] = results["ratio"] >= AIM and not results["problems"]
        if force_profile or results["ratio"] < AIM:
            log(f"  profiling deliver_due on {PROFILE_MESSAGES:,} messages")
            results["profile"] = profile_delivery(PROFILE_MESSAGES, directory, templates)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        if postgres is not None:
            postgres.close()
    return results


def render(results: dict[str, Any]) -> str:
    v = results["variants"]
    base = v["smtplib"]["rate"]
    rows = [(LABELS[name], fmt_int(r["messages"]), f"{r['wall']:.2f}", f"{r['cpu']:.2f}", fmt_int(r["rate"]),
             f"{r['ms_per_message']:.3f}", fmt_ratio(r["rate"] / base) if name != "bookkeeping" else "-")
            for name, r in v.items()]
    out = [table(["variant", "messages", "wall s", "cpu s", "msg/s", "ms/msg", "vs smtplib"], rows,
                 title=f"4. Outbox delivery over SMTP (SQLite outbox on {results['filesystem']} unless said, "
                 "aiosmtpd on 127.0.0.1 in its own process)")]
    verdict = "met" if results["ratio"] >= AIM else "MISSED"
    out.append(f"aim: deliver_due >= {AIM:.1f}x the smtplib rate: {fmt_ratio(results['ratio'])} -> {verdict}")
    sending, total, bookkeeping = v["smtplib"]["ms_per_message"], v["deliver_due"]["ms_per_message"], \
        v["bookkeeping"]["ms_per_message"]
    out.append(f"per message: deliver_due {total:.3f} ms = sending {sending:.3f} (the smtplib loop) + outbox "
               f"bookkeeping {bookkeeping:.3f} (claims and outcomes, a commit per {results.get('batch', '?')} "
               "messages, render: measured alone) + "
               f"{total - sending - bookkeeping:.3f} unaccounted (the two run slower interleaved than alone)")
    for problem in results["problems"]:
        out.append(f"PROBLEM: {problem}")
    if "profile" in results:
        p = results["profile"]
        out.append("")
        out.append(table(["area (self time)", "seconds", "share"],
                         [(a, f"{t:.3f}", f"{100 * t / p['total_s']:.1f}%") for a, t in p["areas"]],
                         title=f"deliver_due profiled ({p['messages']:,} messages, cProfile inflates Python time)"))
        out.append("")
        out.append(table(["function (by self time)", "calls", "self s"],
                         [(f, fmt_int(c), f"{t:.3f}") for f, c, t in p["top_self"]]))
        out.append("")
        out.append(table(["notifications function (cumulative)", "calls", "cum s"],
                         [(f, fmt_int(c), f"{t:.3f}") for f, c, t in p["ours"]]))
    return "\n".join(out)
