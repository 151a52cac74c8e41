"""The scheduler process: APScheduler only ticks; the work is in rows.

Two interval jobs with fixed ids (registered at start-up with ``replace_existing``, no persistent job
store, so nothing pickled survives a deploy): the deadline sweep and outbox delivery. Job defaults
are explicit — ``misfire_grace_time=None`` (a late tick still runs), ``coalesce=True``,
``max_instances=1`` — and the first run of each is immediate, so everything that fell due while the
scheduler was down is processed at start, oldest first. Several schedulers may run at once against
PostgreSQL: timers and messages are claimed with ``FOR UPDATE SKIP LOCKED``. Each sweep also seals the
access log's finished days (``seal_access_log``).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.exc import IntegrityError

from notifications.channels import Channel, InAppChannel, LogChannel, NotifyChannel, SmtpChannel, SmtpSettings
from notifications.outbox import DeliveryResult, deliver_due
from reprisals.access_log import seal_days
from reprisals.accounts import beat, purge_drafts
from reprisals.config import Settings
from reprisals.deadlines import make_timer_handler
from reprisals.messaging import SECRET_TEMPLATES
from reprisals.runtime import Runtime
from workflow.sweep import SweepResult

log = logging.getLogger(__name__)

SWEEP_JOB_ID = "deadline-sweep"
DELIVERY_JOB_ID = "outbox-delivery"
DIGEST_JOB_ID = "daily-digest"
DIGEST_TIME = (8, 0)  # 08:00 Europe/London; the job itself skips days that are not working days
SEAL_GRACE = timedelta(minutes=15)  # a day is sealed once it has been over this long
JOB_DEFAULTS = {"misfire_grace_time": None, "coalesce": True, "max_instances": 1}


def build_channels(settings: Settings) -> dict[str, Channel]:
    """The configured channels: the in-app inbox and the log always, SMTP and Notify when set up."""
    # Development prints invitation links on the operator's console (standard error), never in the log;
    # production refuses to queue them for the log channel at all (Messenger.check_invitations).
    log_channel = LogChannel(console=None if settings.is_production else sys.stderr, console_templates=SECRET_TEMPLATES)
    channels: dict[str, Channel] = {"inapp": InAppChannel(), "log": log_channel}
    if settings.smtp_url:
        channels["smtp"] = SmtpChannel(SmtpSettings.from_url(settings.smtp_url), settings.mail_from)
    if settings.notify_api_key:
        channels["notify"] = NotifyChannel(settings.notify_api_key, settings.notify_template_ids,
                                           settings.notify_base_url)
    return channels


def run_sweep(rt: Runtime, now: datetime | None = None, *, heartbeat: bool = False) -> SweepResult:
    """One sweep as of ``now`` (default: the runtime's clock, which then also times each firing).
    Commits per batch of timers (decision 7). Only the scheduler's own job passes ``heartbeat``: a
    manual ``reprisals deadlines dispatch`` must not make a stopped scheduler look alive."""
    handler = make_timer_handler(rt.messenger)
    with rt.sessions() as session:
        if now is None:
            result = rt.timers.sweep_due(session, rt.clock.now(), handler, clock=rt.clock)
        else:
            result = rt.timers.sweep_due(session, now, handler)
    seal_access_log(rt, now or rt.clock.now())
    daily_checkpoint(rt, now or rt.clock.now())
    with rt.transaction() as session:
        if heartbeat:
            beat(session, "scheduler", rt.clock.now())  # /healthz and /healthz/scheduler report its age
        purge_drafts(session, rt.clock.now())  # reports abandoned with their sessions hold identity
    if result.fired or result.failed:
        log.info("sweep: %s fired, %s failed, %s skipped", result.fired, result.failed, result.skipped)
    return result


def seal_access_log(rt: Runtime, now: datetime) -> int:
    """Seal the access log's days that ended at least ``SEAL_GRACE`` ago, in its own short transaction
    (decision 23). The grace lets a request that took its moment just before midnight, or a web server
    whose clock is a little behind, commit its entry before that day is sealed. Two schedulers sealing
    the same day at once: one inserts the day's row, the other's insert conflicts and it leaves it."""
    try:
        with rt.transaction() as session:
            sealed = seal_days(session, now - SEAL_GRACE)
    except IntegrityError:
        log.info("access log: another scheduler sealed the same day; left to it")
        return 0
    if sealed:
        log.info("access log: %s day(s) sealed", sealed)
    return sealed


def daily_checkpoint(rt: Runtime, now: datetime) -> str | None:
    """Once a UTC day, when a signing key is configured: sign a checkpoint into REPRISALS_CHECKPOINT_DIR
    (after the day's sealing, so yesterday's access-log head is in it). Returns the file written, if any. A
    failure is logged and left for the next sweep: the sweep's own work must not wait on it."""
    from reprisals.access_log import record
    from reprisals.checkpoints import write, written_today
    from reprisals.proof import ProofError

    key, folder = rt.settings.audit_signing_key_file, rt.settings.checkpoint_dir
    if key is None or folder is None or written_today(folder, now):
        return None
    try:
        with rt.transaction() as session:
            document = write(session, key, folder, now)
            record(session, now, "checkpoint_signed", via="scheduler",
                   detail={"chains": document["chains"]["count"], "ledger": document["ledger"]["seq"]})
    except (ProofError, OSError) as exc:
        log.error("checkpoint: not written (%s)", exc)
        return None
    log.info("checkpoint: %s", document["_path"])
    return str(document["_path"])


def _scheduled_sweep(rt: Runtime) -> SweepResult:
    return run_sweep(rt, heartbeat=True)


_scheduled_sweep.__name__ = _scheduled_sweep.__qualname__ = "run_sweep"  # the job's name in log lines


def run_delivery(rt: Runtime, channels: Mapping[str, Channel], now: datetime | None = None) -> DeliveryResult:
    """Deliver every message due by ``now`` (default: the runtime's clock). Commits per batch (decision 10)."""
    with rt.sessions() as session:
        result = deliver_due(session, now or rt.clock.now(), channels, rt.templates,
                             max_attempts=rt.settings.outbox_max_attempts)
    if result.sent or result.failed or result.retried:
        log.info("delivery: %s sent, %s to retry, %s failed", result.sent, result.retried, result.failed)
    return result


def run_digest(rt: Runtime, now: datetime | None = None) -> int:
    """Queue today's digests (working days only; once per user and day)."""
    with rt.transaction() as session:
        return rt.messenger.daily_digests(session, now or rt.clock.now())


def build_scheduler(rt: Runtime, *, blocking: bool, channels: Mapping[str, Channel] | None = None) -> BaseScheduler:
    chans = dict(channels or build_channels(rt.settings))
    cls: type[BaseScheduler] = BlockingScheduler if blocking else BackgroundScheduler
    scheduler = cls(timezone=UTC, job_defaults=dict(JOB_DEFAULTS))
    interval = rt.settings.scheduler_interval
    start = datetime.now(UTC)
    scheduler.add_job(_guarded(_scheduled_sweep, rt), "interval", seconds=interval, id=SWEEP_JOB_ID,
                      replace_existing=True, next_run_time=start)
    scheduler.add_job(_guarded(run_delivery, rt, chans), "interval", seconds=interval, id=DELIVERY_JOB_ID,
                      replace_existing=True, next_run_time=start)
    scheduler.add_job(_guarded(run_digest, rt), CronTrigger(hour=DIGEST_TIME[0], minute=DIGEST_TIME[1],
                                                             timezone="Europe/London"),
                      id=DIGEST_JOB_ID, replace_existing=True)
    return scheduler


def _guarded(fn: Any, *args: Any) -> Any:
    """A job must never die: log the failure and try again at the next tick."""

    def job() -> None:
        try:
            fn(*args)
        except Exception:  # a database blip must not stop the scheduler
            log.exception("%s failed; will retry at the next tick", fn.__name__)

    # APScheduler names a job (in every log line) by its __qualname__, not its __name__.
    job.__name__ = job.__qualname__ = fn.__name__
    return job


def run_blocking(rt: Runtime, channels: Mapping[str, Channel] | None = None) -> None:
    """`reprisals scheduler`: run until SIGTERM or SIGINT, then finish the running job and stop."""
    scheduler = build_scheduler(rt, blocking=True, channels=channels)

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal %s: stopping the scheduler after the running jobs", signum)
        # shutdown() from a signal handler inside BlockingScheduler's wait is safe: it sets an event.
        threading.Thread(target=scheduler.shutdown, kwargs={"wait": True}, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("scheduler %s started: sweep and delivery every %s s", os.getpid(), rt.settings.scheduler_interval)
    scheduler.start()
    log.info("scheduler %s stopped", os.getpid())


def start_in_process(rt: Runtime, *, reloader: bool, channels: Mapping[str, Channel] | None = None
                     ) -> BaseScheduler | None:
    """For `reprisals run`: a background scheduler in the web process, started once. Under the
    Werkzeug reloader two processes run the app; only the serving child (WERKZEUG_RUN_MAIN=true)
    starts the scheduler, never the watching parent."""
    if reloader and os.environ.get("WERKZEUG_RUN_MAIN") != "true":
        return None
    scheduler = build_scheduler(rt, blocking=False, channels=channels)
    scheduler.start()
    return scheduler

