"""Everything a process needs, built once from the settings: database, engine, cipher, clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from notifications.templates import Templates
from reprisals.config import Settings
from reprisals.crypto import Cipher
from reprisals.errors import ConfigurationError
from reprisals.messaging import SAMPLES, Messenger, message_templates
from reprisals.protocol import build_engine
from reprisals.protocol_store import load_stored_spec
from workflow.clock import Clock, SystemClock
from workflow.db import create_db_engine
from workflow.deadlines import Timers
from workflow.engine import Engine


@dataclass
class Runtime:
    settings: Settings
    db: sa.Engine
    sessions: sessionmaker[Session]
    engine: Engine
    cipher: Cipher
    clock: Clock
    timers: Timers
    templates: Templates
    messenger: Messenger

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock | None = None) -> Runtime:
        db = create_db_engine(settings.database_url)
        templates = message_templates()
        problems = templates.check(SAMPLES)
        if problems:
            raise ConfigurationError(problems)
        sessions = sessionmaker(db, expire_on_commit=False)
        cipher = Cipher(settings.encryption_keys, pseudonym_key=settings.pseudonym_key)
        engine = build_engine(list(settings.protocol_files), day_end=settings.working_day_end, cipher=cipher)
        # Versions uploaded by admins are read when a case on one is first touched (no I/O at start-up).
        engine.loader = load_stored_spec
        return cls(settings, db, sessions, engine, cipher, clock or SystemClock(),
                   Timers(settings.working_day_end), templates,
                   Messenger(settings.base_url, settings.email_channel, production=settings.is_production))

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commit if the block succeeds, roll back if it raises."""
        with self.sessions() as session, session.begin():
            yield session

    def close(self) -> None:
        self.db.dispose()
