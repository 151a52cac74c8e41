"""The scheduler process: APScheduler only ticks; the work is in rows.

Two interval jobs with fixed ids (registered at start-up with ``replace_existing``, no persistent job
store, so nothing pickled survives a deploy): the deadline sweep and outbox delivery. Job defaults
are explicit — ``misfire_grace_time=None`` (a late tick still runs), ``coalesce=True``,
``max_instances=1`` — and the first run of each is immediate, so everything that fell due while the
scheduler was down is processed at start, oldest first. Several schedulers may run at once against
PostgreSQL: timers and messages are claimed with ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from notifications.outbox import Channel, DeliveryResult, LogChannel, deliver_due
from reprisals.deadlines import make_timer_handler
from reprisals.runtime import Runtime
from workflow.timers import SweepResult

log = logging.getLogger(__name__)

SWEEP_JOB_ID = "deadline-sweep"
DELIVERY_JOB_ID = "outbox-delivery"
JOB_DEFAULTS = {"misfire_grace_time": None, "coalesce": True, "max_instances": 1}


def default_channels() -> dict[str, Channel]:
    return {"log": LogChannel()}


def run_sweep(rt: Runtime, now: datetime | None = None) -> SweepResult:
    """One sweep as of ``now`` (default: the runtime's clock, which then also times each firing).
    Commits per timer."""
    handler = make_timer_handler(rt.settings.base_url)
    with rt.sessions() as session:
        if now is None:
            result = rt.timers.sweep_due(session, rt.clock.now(), handler, clock=rt.clock)
        else:
            result = rt.timers.sweep_due(session, now, handler)
    if result.fired or result.failed:
        log.info("sweep: %s fired, %s failed, %s skipped", result.fired, result.failed, result.skipped)
    return result


def run_delivery(rt: Runtime, channels: Mapping[str, Channel], now: datetime | None = None) -> DeliveryResult:
    with rt.sessions() as session:
        return deliver_due(session, now or rt.clock.now(), channels)


def build_scheduler(rt: Runtime, *, blocking: bool, channels: Mapping[str, Channel] | None = None) -> BaseScheduler:
    chans = dict(channels or default_channels())
    cls: type[BaseScheduler] = BlockingScheduler if blocking else BackgroundScheduler
    scheduler = cls(timezone=UTC, job_defaults=dict(JOB_DEFAULTS))
    interval = rt.settings.scheduler_interval
    start = datetime.now(UTC)
    scheduler.add_job(_guarded(run_sweep, rt), "interval", seconds=interval, id=SWEEP_JOB_ID,
                      replace_existing=True, next_run_time=start)
    scheduler.add_job(_guarded(run_delivery, rt, chans), "interval", seconds=interval, id=DELIVERY_JOB_ID,
                      replace_existing=True, next_run_time=start)
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

