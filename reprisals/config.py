"""Configuration from ``REPRISALS_*`` environment variables (and a ``.env`` file), validated once at
start-up. Every problem is reported as one line naming the variable; nothing starts half-configured.

With no configuration at all the product runs for development: SQLite in the instance folder, and a
secret key and an encryption key generated into that folder with a loud warning.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path

from dotenv import dotenv_values

from notifications.channels import SmtpSettings
from reprisals.crypto import Cipher, generate_key
from reprisals.emails import email_problem
from reprisals.errors import ConfigurationError

log = logging.getLogger(__name__)

PREFIX = "REPRISALS_"
ENVIRONMENTS = ("development", "production", "test")
KNOWN = {
    "ENV", "DATABASE_URL", "INSTANCE_PATH", "SECRET_KEY", "ENCRYPTION_KEYS", "SMTP_URL", "BASE_URL",
    "SCHEDULER_INTERVAL", "WORKING_DAY_END", "LOG_LEVEL", "PROTOCOL_FILES", "EMAIL_CHANNEL", "MAIL_FROM",
    "NOTIFY_API_KEY", "NOTIFY_BASE_URL", "NOTIFY_TEMPLATE_IDS", "OUTBOX_MAX_ATTEMPTS", "TRUSTED_PROXIES",
    "AUDIT_SIGNING_KEY_FILE", "CHECKPOINT_DIR", "PSEUDONYM_KEY",
}
EMAIL_CHANNELS = ("log", "smtp", "notify")
MAX_TRUSTED_PROXIES = 5
# The templates that can go by e-mail (each needs a Notify template id); ``account_to_confirm`` is in-app only.
MESSAGE_TEMPLATES = ("reminder", "overdue", "escalation_prompt", "case_assigned", "daily_digest", "party_case_opened",
                     "party_case_closed", "finding_to_confirm", "sign_in_attack", "invitation")


@dataclass(frozen=True)
class Settings:
    env: str
    instance_path: Path
    database_url: str
    secret_key: str
    encryption_keys: tuple[str, ...]
    smtp_url: str | None
    base_url: str
    scheduler_interval: float
    working_day_end: time
    log_level: str
    protocol_files: tuple[Path, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    email_channel: str = "log"
    mail_from: str = "reprisals@localhost.localdomain"
    notify_api_key: str | None = None
    notify_base_url: str = "https://api.notifications.service.gov.uk"
    notify_template_ids: dict[str, str] = field(default_factory=dict)
    outbox_max_attempts: int = 8
    trusted_proxies: int = 0  # reverse proxies in front whose X-Forwarded-For/-Proto are believed
    # The Ed25519 private key that signs checkpoints (a file, never the database), and where they are written.
    audit_signing_key_file: Path | None = None
    checkpoint_dir: Path | None = None
    # The key of the pseudonyms' keyed hash (reprisals.pseudonyms): separate from the encryption keys.
    pseudonym_key: str | None = None

    @property
    def is_production(self) -> bool:
        return self.env == "production"


def _instance_secret(path: Path, name: str, make: str, problems: list[str], var: str) -> str | None:
    """Read a development secret from the instance folder, creating it on first use."""
    target = path / name
    try:
        if target.exists():
            return target.read_text(encoding="ascii").strip()
        path.mkdir(parents=True, exist_ok=True)
        # Created readable by the owner only from the first byte (no window with wider permissions).
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(make + "\n")
        return make
    except OSError as exc:
        problems.append(f"{PREFIX}{var}: not set, and no development value could be kept in {target}: {exc}")
        return None


def load_settings(environ: Mapping[str, str] | None = None, *, dotenv: Path | None = Path(".env")) -> Settings:
    """Read and validate the configuration. Raises ConfigurationError listing every problem."""
    env: dict[str, str] = {}
    if dotenv is not None and dotenv.is_file():
        env.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
    env.update(os.environ if environ is None else environ)

    def get(name: str) -> str | None:
        return env.get(PREFIX + name)

    problems: list[str] = []
    warnings: list[str] = []

    for key in env:
        # REPRISALS_TEST_* belong to the test suite, not to the product.
        if key.startswith(PREFIX) and key[len(PREFIX):] not in KNOWN and not key.startswith(PREFIX + "TEST_"):
            problems.append(f"{key}: unknown setting (known: {', '.join(sorted(PREFIX + k for k in KNOWN))})")

    mode = (get("ENV") or "development").strip().lower()
    if mode not in ENVIRONMENTS:
        problems.append(f"{PREFIX}ENV: '{mode}' is not one of {', '.join(ENVIRONMENTS)}")
    instance = Path(get("INSTANCE_PATH") or "instance").expanduser().resolve()

    url = (get("DATABASE_URL") or f"sqlite:///{instance / 'reprisals.db'}").strip()
    if url.startswith("postgres://") or url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if not (url.startswith("sqlite:///") or url.startswith("postgresql+psycopg://")):
        problems.append(f"{PREFIX}DATABASE_URL: must be sqlite:///PATH or postgresql://USER@HOST/DB, got "
                        f"'{url.split('://', 1)[0]}://…'")
    elif url.startswith("sqlite:///"):
        folder = Path(url[len("sqlite:///"):]).parent
        if folder == instance:
            try:  # the default place: the instance folder is ours to create
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                problems.append(f"{PREFIX}INSTANCE_PATH: cannot create {folder}: {exc}")
        elif not folder.is_dir():
            problems.append(f"{PREFIX}DATABASE_URL: the folder {folder} for the SQLite file does not exist")

    secret = get("SECRET_KEY")
    if secret is None:
        if mode == "production":
            problems.append(f"{PREFIX}SECRET_KEY: required in production (a long random string)")
        else:
            secret = _instance_secret(instance, "secret_key", secrets.token_urlsafe(48), problems, "SECRET_KEY")
            warnings.append(f"{PREFIX}SECRET_KEY is not set: using a development key kept in {instance}")
    elif len(secret) < 32:
        problems.append(f"{PREFIX}SECRET_KEY: too short ({len(secret)} characters); use at least 32")

    keys_text = get("ENCRYPTION_KEYS")
    keys: tuple[str, ...] = ()
    if keys_text is None:
        if mode == "production":
            problems.append(f"{PREFIX}ENCRYPTION_KEYS: required in production (make one with "
                            "`reprisals keys generate`)")
        else:
            made = _instance_secret(instance, "encryption_key", generate_key(), problems, "ENCRYPTION_KEYS")
            keys = (made,) if made else ()
            warnings.append(f"{PREFIX}ENCRYPTION_KEYS is not set: identity is encrypted with a DEVELOPMENT key "
                            f"kept in {instance}. Never use this for real cases.")
    else:
        keys = tuple(k.strip() for k in keys_text.split(",") if k.strip())
        try:
            Cipher(keys)
        except ConfigurationError as exc:
            problems.extend(exc.problems)

    pseudonym_key = get("PSEUDONYM_KEY")
    if pseudonym_key is None:
        if mode == "production":
            problems.append(f"{PREFIX}PSEUDONYM_KEY: required in production, and different from the encryption "
                            "keys (make one with `reprisals keys generate --pseudonym`)")
        else:
            pseudonym_key = _instance_secret(instance, "pseudonym_key", secrets.token_urlsafe(32), problems,
                                             "PSEUDONYM_KEY")
            warnings.append(f"{PREFIX}PSEUDONYM_KEY is not set: using a development key kept in {instance}")
    elif len(pseudonym_key.strip()) < 32:
        problems.append(f"{PREFIX}PSEUDONYM_KEY: too short ({len(pseudonym_key.strip())} characters); use at least "
                        "32 (make one with `reprisals keys generate --pseudonym`)")
    elif pseudonym_key.strip() in keys:
        problems.append(f"{PREFIX}PSEUDONYM_KEY: must not be one of the encryption keys")

    smtp = get("SMTP_URL")
    if smtp is not None:
        try:
            SmtpSettings.from_url(smtp)
        except ValueError as exc:
            problems.append(f"{PREFIX}SMTP_URL: {exc}")

    channel = (get("EMAIL_CHANNEL") or ("smtp" if smtp else "log")).strip().lower()
    if channel not in EMAIL_CHANNELS:
        problems.append(f"{PREFIX}EMAIL_CHANNEL: unknown channel '{channel}' (known: {', '.join(EMAIL_CHANNELS)})")
    if channel == "smtp" and not smtp:
        problems.append(f"{PREFIX}SMTP_URL: required when {PREFIX}EMAIL_CHANNEL is smtp")
    mail_from = (get("MAIL_FROM") or "reprisals@localhost.localdomain").strip()
    if (problem := email_problem(mail_from)) is not None:
        problems.append(f"{PREFIX}MAIL_FROM: '{mail_from}' is not an e-mail address ({problem})")
    notify_key = get("NOTIFY_API_KEY")
    notify_url = (get("NOTIFY_BASE_URL") or "https://api.notifications.service.gov.uk").rstrip("/")
    template_ids: dict[str, str] = {}
    for item in (get("NOTIFY_TEMPLATE_IDS") or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep or name.strip() not in MESSAGE_TEMPLATES or not value.strip():
            problems.append(f"{PREFIX}NOTIFY_TEMPLATE_IDS: '{item.strip()}' is not NAME=TEMPLATE_ID with NAME one of "
                            f"{', '.join(MESSAGE_TEMPLATES)}")
        else:
            template_ids[name.strip()] = value.strip()
    if channel == "notify":
        if not notify_key:
            problems.append(f"{PREFIX}NOTIFY_API_KEY: required when {PREFIX}EMAIL_CHANNEL is notify")
        missing = [t for t in MESSAGE_TEMPLATES if t not in template_ids]
        if missing:
            problems.append(f"{PREFIX}NOTIFY_TEMPLATE_IDS: no Notify template id for {', '.join(missing)}")
    if not (notify_url.startswith("http://") or notify_url.startswith("https://")):
        problems.append(f"{PREFIX}NOTIFY_BASE_URL: must be an http:// or https:// address")
    max_attempts = 8
    raw_attempts = get("OUTBOX_MAX_ATTEMPTS")
    if raw_attempts is not None:
        if raw_attempts.strip().isdigit() and 1 <= int(raw_attempts) <= 100:
            max_attempts = int(raw_attempts)
        else:
            problems.append(f"{PREFIX}OUTBOX_MAX_ATTEMPTS: '{raw_attempts}' is not a whole number from 1 to 100")

    trusted_proxies = 0
    raw_proxies = get("TRUSTED_PROXIES")
    if raw_proxies is not None:
        if raw_proxies.strip().isdigit() and int(raw_proxies) <= MAX_TRUSTED_PROXIES:
            trusted_proxies = int(raw_proxies)
        else:
            problems.append(f"{PREFIX}TRUSTED_PROXIES: '{raw_proxies}' is not a whole number from 0 to "
                            f"{MAX_TRUSTED_PROXIES} (how many reverse proxies are in front of the service; 0 for none)")

    base_url = (get("BASE_URL") or "http://127.0.0.1:5000").rstrip("/")
    if not (base_url.startswith("http://") or base_url.startswith("https://")):
        problems.append(f"{PREFIX}BASE_URL: must be an http:// or https:// address")

    interval = 15.0
    raw_interval = get("SCHEDULER_INTERVAL")
    if raw_interval is not None:
        try:
            interval = float(raw_interval)
            if not 0.1 <= interval <= 3600:
                raise ValueError
        except ValueError:
            problems.append(f"{PREFIX}SCHEDULER_INTERVAL: '{raw_interval}' is not a number of seconds "
                            "between 0.1 and 3600")

    end = time(17, 0)
    raw_end = get("WORKING_DAY_END")
    if raw_end is not None:
        try:
            end = time.fromisoformat(raw_end)
        except ValueError:
            problems.append(f"{PREFIX}WORKING_DAY_END: '{raw_end}' is not a time such as 17:00")

    level = (get("LOG_LEVEL") or "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        problems.append(f"{PREFIX}LOG_LEVEL: '{level}' is not one of DEBUG, INFO, WARNING, ERROR")

    files: list[Path] = []
    for item in (get("PROTOCOL_FILES") or "").split(","):
        if item.strip():
            p = Path(item.strip())
            if not p.is_file():
                problems.append(f"{PREFIX}PROTOCOL_FILES: {p} does not exist")
            files.append(p)

    signing_text = (get("AUDIT_SIGNING_KEY_FILE") or "").strip()
    signing = Path(signing_text).expanduser() if signing_text else None
    if signing is not None and not signing.is_file():
        problems.append(f"{PREFIX}AUDIT_SIGNING_KEY_FILE: {signing} does not exist (make one with "
                        "`reprisals keys generate --signing --out DIR`)")
    checkpoints = Path((get("CHECKPOINT_DIR") or "").strip() or instance / "checkpoints").expanduser()

    if problems:
        raise ConfigurationError(problems)
    assert secret is not None
    return Settings(mode, instance, url, secret, keys, smtp, base_url, interval, end, level, tuple(files),
                    tuple(warnings), channel, mail_from, notify_key, notify_url, template_ids, max_attempts,
                    trusted_proxies=trusted_proxies, audit_signing_key_file=signing, checkpoint_dir=checkpoints,
                    pseudonym_key=pseudonym_key.strip() if pseudonym_key else None)
