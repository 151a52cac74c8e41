"""Forcing an interleaving of two real PostgreSQL transactions, each in its own thread and connection.

``Interleaving.hold(after=...)`` stops one thread right after it has sent a statement (so it holds the
locks that statement took) until the other thread's backend is waiting for a lock, or that thread has
finished; then it lets it go on. Nothing of ours is replaced: the hook is an SQLAlchemy event on the
real engine, and the wait is read from ``pg_stat_activity``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from tests.support.waiting import wait_for


@dataclass
class Outcome:
    name: str
    error: BaseException | None = None
    result: Any = None
    done: threading.Event = field(default_factory=threading.Event)
    pid: int | None = None


@dataclass
class Interleaving:
    engine: sa.Engine
    admin: sa.Engine
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    _threads: dict[int, str] = field(default_factory=dict)
    _holds: list[tuple[str, re.Pattern[str], str]] = field(default_factory=list)
    held: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        event.listen(self.engine, "after_cursor_execute", self._after)

    def close(self) -> None:
        event.remove(self.engine, "after_cursor_execute", self._after)

    def hold(self, who: str, after: str, until_waiting: str) -> None:
        """Stop ``who`` after its first statement matching the regex ``after`` until ``until_waiting`` waits for
        a lock (or has finished)."""
        self._holds.append((who, re.compile(after, re.IGNORECASE | re.DOTALL), until_waiting))

    def _after(self, _conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        who = self._threads.get(threading.get_ident())
        if who is None:
            return
        self.outcomes[who].pid = cursor.connection.info.backend_pid  # the connection it uses now (psycopg 3)
        for i, (name, pattern, other) in enumerate(self._holds):
            if name == who and pattern.search(statement):
                del self._holds[i]
                self.held.append(f"{who} after {pattern.pattern}")
                wait_for(lambda other=other: self._waiting(other) or self.outcomes[other].done.is_set(),
                         f"{other} to wait for a lock held by {who}", timeout=20)
                return

    def _waiting(self, name: str) -> bool:
        pid = self.outcomes[name].pid
        if pid is None:
            return False
        with self.admin.connect() as conn:
            kind = conn.execute(sa.text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
                                {"pid": pid}).scalar()
        return kind == "Lock"

    def run(self, work: dict[str, Callable[[Session], None]], sessions: Callable[[], Session],
            first: str, second: str) -> dict[str, Outcome]:
        """Run each ``work[name](session)`` in its own thread and session, committing if it returns: ``first``
        until it is held (or done), then ``second``. Returns what became of each."""

        def in_session(name: str) -> Callable[[], None]:
            def call() -> None:
                session = sessions()
                try:
                    self.outcomes[name].pid = session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
                    work[name](session)
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise
                finally:
                    session.close()
            return call

        return self.run_calls({name: in_session(name) for name in (first, second)}, first, second)

    def run_calls(self, work: dict[str, Callable[[], Any]], first: str, second: str) -> dict[str, Outcome]:
        """Run each ``work[name]()`` in its own thread (a request through a test client, say, which uses
        the engine's connections itself): ``first`` until it is held (or done), then ``second``. Each
        outcome keeps what the call returned, or the error it raised."""
        threads = []
        self.outcomes.update({name: Outcome(name) for name in (first, second)})
        for name in (first, second):
            outcome = self.outcomes[name]

            def body(name: str = name, outcome: Outcome = outcome) -> None:
                self._threads[threading.get_ident()] = name
                try:
                    outcome.result = work[name]()
                except BaseException as exc:  # recorded for the test to look at
                    outcome.error = exc
                finally:
                    outcome.done.set()

            thread = threading.Thread(target=body, name=name, daemon=True)
            thread.start()
            threads.append(thread)
            if name == first:
                wait_for(lambda outcome=outcome: any(h.startswith(f"{first} ") for h in self.held)
                         or outcome.done.is_set(),
                         f"{first} to reach the point where it is held", timeout=20)
        for thread in threads:
            thread.join(60)
            assert not thread.is_alive(), f"{thread.name} did not finish"
        return self.outcomes
