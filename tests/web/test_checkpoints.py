"""Signed checkpoints through the command: a key pair, a checkpoint signed with it, and `audit verify
--checkpoint` finding what a database superuser can make consistent again — a tail cut with its head moved
back, a history rewritten with its hashes recomputed, a rewritten ledger, a case removed, a history cut back
to before the checkpoint — each done with raw SQL; and a changed checkpoint or another key refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reprisals.proof import PRIVATE_NAME, PUBLIC_NAME
from tests.conftest import ONE_DATABASE, Database
from tests.web.conftest import Cli, Web, World
from workflow.history import LEDGER_GENESIS, event_hash, genesis_hash, ledger_hash
from workflow.models import HistoryEvent, LedgerEntry


@pytest.fixture
def signed(run: Cli, world: World, tmp_path: Path) -> tuple[Cli, Path, Path]:
    """The world with a referred case (3 events), a key pair, and a checkpoint signed with it."""
    assert run("case", "advance", world.triaged, "refer", "--as", world.lead,
               "-f", "recipients=head_of_establishment").exit_code == 0
    keys = tmp_path / "keys"
    made = run("keys", "generate", "--signing", "--out", str(keys))
    assert made.exit_code == 0, made.output
    assert (keys / PRIVATE_NAME).stat().st_mode & 0o077 == 0  # the private key: its owner's only
    signing = Cli({**run.env, "REPRISALS_AUDIT_SIGNING_KEY_FILE": str(keys / PRIVATE_NAME),
                   "REPRISALS_CHECKPOINT_DIR": str(tmp_path / "checkpoints")})
    out = signing("audit", "checkpoint")
    assert out.exit_code == 0, out.output
    (checkpoint,) = (tmp_path / "checkpoints").glob("checkpoint-*.json")
    assert "checkpoint written" in out.stdout and str(checkpoint) in out.stdout
    return signing, checkpoint, keys / PUBLIC_NAME


def _verify(run: Cli, checkpoint: Path, public: Path) -> Any:
    return run("audit", "verify", "--checkpoint", str(checkpoint), "--public-key", str(public))


def _rechain(db: Database, instance_id: int) -> None:
    """What a superuser who knows the recipe does after editing a chain: recompute every hash and the head."""
    with db.session() as s:
        events = list(s.query(HistoryEvent).filter_by(instance_id=instance_id).order_by(HistoryEvent.seq))
        prev = genesis_hash(instance_id)
        for e in events:
            e.prev_hash = prev
            e.hash = event_hash(e)
            prev = e.hash
        s.commit()
    db.raw("UPDATE wf_instances SET head_seq = :n, head_hash = :h WHERE id = :i", n=len(events), h=prev,
           i=instance_id)
    _relink_ledger(db)


def _relink_ledger(db: Database) -> None:
    with db.session() as s:
        prev, last = LEDGER_GENESIS, 0
        for entry in s.query(LedgerEntry).order_by(LedgerEntry.seq):
            first = s.query(HistoryEvent).filter_by(instance_id=entry.instance_id, seq=1).one_or_none()
            entry.genesis_hash = first.hash if first else entry.genesis_hash
            entry.prev_hash = prev
            entry.hash = ledger_hash(entry)
            prev, last = entry.hash, entry.seq
        s.commit()
    db.raw("UPDATE wf_chain_heads SET seq = :s, hash = :h WHERE name = 'ledger'", s=last, h=prev)


def _cut_tail(db: Database, w: World) -> None:
    long = w.instance_ids[w.triaged]
    db.raw("DELETE FROM wf_history WHERE instance_id = :i AND seq = 3", i=long)
    db.raw("UPDATE wf_instances SET stage = 'triage' WHERE id = :i", i=long)
    _rechain(db, long)


def _rewrite(db: Database, w: World) -> None:
    long = w.instance_ids[w.triaged]
    db.raw("UPDATE wf_history SET actor_id = 'someone-else' WHERE instance_id = :i AND seq = 2", i=long)
    _rechain(db, long)


def _remove_case(db: Database, w: World) -> None:
    short = w.instance_ids[w.reported]
    for sql in ("DELETE FROM wf_timers WHERE deadline_id IN (SELECT id FROM wf_deadlines WHERE instance_id = :i)",
                "DELETE FROM wf_deadlines WHERE instance_id = :i", "DELETE FROM case_keys WHERE instance_id = :i",
                "DELETE FROM case_parties WHERE case_id = (SELECT id FROM cases WHERE instance_id = :i)",
                "DELETE FROM detainees WHERE case_id = (SELECT id FROM cases WHERE instance_id = :i)",
                "DELETE FROM access_log WHERE case_id = (SELECT id FROM cases WHERE instance_id = :i)",
                "DELETE FROM inbox_items WHERE 1 = 0", "DELETE FROM cases WHERE instance_id = :i",
                "DELETE FROM wf_history WHERE instance_id = :i", "DELETE FROM wf_ledger WHERE instance_id = :i",
                "DELETE FROM wf_instances WHERE id = :i"):
        db.raw(sql, i=short)
    db.raw("UPDATE wf_ledger SET seq = seq - 1 WHERE seq > 1")  # the ledger renumbered, as if it never was
    _relink_ledger(db)


def _rewrite_ledger(db: Database, w: World) -> None:
    db.raw("UPDATE wf_ledger SET prev_hash = prev_hash")  # (the triggers are off)
    with db.session() as s:
        entries = list(s.query(LedgerEntry).order_by(LedgerEntry.seq))
        ids = [e.instance_id for e in entries]
    db.raw("DELETE FROM wf_ledger")
    for seq, instance_id in enumerate(reversed(ids), 1):  # born in another order
        db.raw("INSERT INTO wf_ledger (seq, instance_id, genesis_hash, prev_hash, hash, hash_version) "
               "VALUES (:s, :i, '', '', '', 2)", s=seq, i=instance_id)
    _relink_ledger(db)


@pytest.mark.parametrize("tamper, words", [
    (_cut_tail, "is shorter than at"),
    (_rewrite, "was rewritten and its hashes recomputed"),
    (_remove_case, "and is gone"),
    (_rewrite_ledger, "the ledger was rewritten"),
])
def test_a_checkpoint_finds_what_the_chains_alone_cannot(
        signed: tuple[Cli, Path, Path], world: World, database: Database,
        tamper: Callable[[Database, World], None], words: str) -> None:
    run, checkpoint, public = signed
    held = _verify(run, checkpoint, public)
    assert held.exit_code == 0, held.output
    assert "checkpoint of" in held.stdout and "holds: 2 cases" in held.stdout

    database.disable_append_only()
    tamper(database, world)
    alone = run("audit", "verify")
    assert alone.exit_code == 0, alone.output  # made consistent again: the chains alone see nothing
    found = _verify(run, checkpoint, public)
    assert found.exit_code == 1
    assert words in found.stderr and "checkpoint NOT held" in found.stderr


@ONE_DATABASE
def test_a_changed_checkpoint_or_another_key_is_refused(signed: tuple[Cli, Path, Path], tmp_path: Path) -> None:
    run, checkpoint, public = signed
    document = json.loads(checkpoint.read_text())
    document["ledger"]["seq"] += 1
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(document))
    refused = _verify(run, changed, public)
    assert refused.exit_code == 1 and "signature does not match its content" in refused.output
    other = tmp_path / "other"
    assert run("keys", "generate", "--signing", "--out", str(other)).exit_code == 0
    wrong = _verify(run, checkpoint, other / PUBLIC_NAME)
    assert wrong.exit_code == 1 and "signed with another key" in wrong.output
    half = run("audit", "verify", "--checkpoint", str(checkpoint))
    assert half.exit_code == 2 and "go together" in half.output
    again = run("keys", "generate", "--signing", "--out", str(other))
    assert again.exit_code == 1 and "already holds a signing key" in again.output


@ONE_DATABASE
def test_no_signing_key_is_said_in_words(run: Cli, world: World) -> None:
    result = run("audit", "checkpoint")
    assert result.exit_code == 2 and "REPRISALS_AUDIT_SIGNING_KEY_FILE is not set" in result.output


def test_the_scheduler_signs_one_checkpoint_a_day(world: World, database: Database, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from reprisals.config import load_settings
    from reprisals.proof import check, generate_signing_keys, load_public_key, read
    from reprisals.runtime import Runtime
    from tests.web.conftest import settings_env
    from web.scheduler import run_sweep
    from workflow.clock import FrozenClock

    private, public = generate_signing_keys(tmp_path / "keys")
    folder = tmp_path / "checkpoints"
    settings = load_settings(settings_env(database, tmp_path, AUDIT_SIGNING_KEY_FILE=str(private),
                                          CHECKPOINT_DIR=str(folder)), dotenv=None)
    clock = FrozenClock(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    rt = Runtime.from_settings(settings, clock=clock)
    try:
        run_sweep(rt)
        run_sweep(rt)
        assert len(list(folder.glob("checkpoint-20261207T*.json"))) == 1
        clock.advance(timedelta(days=1))
        run_sweep(rt)
        files = sorted(folder.glob("checkpoint-*.json"))
        assert len(files) == 2
        assert all(check(read(f), load_public_key(public)) == [] for f in files)
        assert read(files[-1])["chains"]["count"] == 2
    finally:
        rt.close()


@ONE_DATABASE
def test_a_case_export_is_checked_away_from_the_server_and_one_changed_byte_names_its_event(
        signed: tuple[Cli, Path, Path], world: World, database: Database, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    run, _checkpoint, public = signed
    export = tmp_path / "case.json"
    made = run("case", "export", world.triaged, "--as", world.auditor, "--out", str(export))
    assert made.exit_code == 0, made.output
    assert "3 events written" in made.stdout and "with a signed checkpoint" in made.stdout
    assert "CANARYTEXT42" not in export.read_text()  # sensitive values stay sealed
    assert database.raw("SELECT count(*) FROM access_log WHERE kind = 'export'")[0][0] == 1
    refused = run("case", "export", world.triaged, "--as", world.staff, "--out", str(tmp_path / "x.json"))
    assert refused.exit_code == 1 and "only leads and auditors" in refused.output

    # No database, no configuration, no encryption key: a bare environment in an empty folder.
    bare = {k: v for k, v in os.environ.items() if not k.startswith("REPRISALS_")}
    elsewhere = tmp_path / "auditor"
    elsewhere.mkdir()
    command = [str(Path(sys.executable).with_name("reprisals")), "audit", "verify", "--file", str(export),
               "--public-key", str(public)]

    def offline() -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, capture_output=True, text=True, env=bare, cwd=elsewhere, timeout=60,
                              check=False)

    ok = offline()
    assert ok.returncode == 0, ok.stderr
    assert "events 1..3 are as signed at" in ok.stdout and "history verified" in ok.stdout
    assert list(elsewhere.iterdir()) == []  # it made no instance folder, no database

    text = export.read_text()
    second = json.loads(text)["events"][1]
    own = text.index(f'"hash":"{second["hash"]}"')  # event 2's own hash: unique
    start = text.rindex('"actor":"', 0, own) + len('"actor":"')  # the actor of event 2 (keys are sorted)
    changed = text[:start] + ("9" if text[start] != "9" else "8") + text[start + 1:]
    export.write_text(changed)
    assert sum(a != b for a, b in zip(text, changed, strict=True)) == 1
    broken = offline()
    assert broken.returncode == 1
    assert "event 2" in broken.stderr and "does not match its hash" in broken.stderr


def test_an_export_of_a_history_rewritten_since_the_checkpoint_fails_offline(
        signed: tuple[Cli, Path, Path], world: World, database: Database, tmp_path: Path) -> None:
    from reprisals.proof import load_public_key, read, verify_export

    run, _checkpoint, public = signed
    database.disable_append_only()
    _rewrite(database, world)  # consistent again: every hash recomputed
    export = tmp_path / "case.json"
    assert run("case", "export", world.triaged, "--as", world.lead, "--out", str(export)).exit_code == 0
    problems, _ = verify_export(read(export), load_public_key(public))
    assert problems == [f"event 3: is not the head the checkpoint of {read(_checkpoint)['made_at']} signed (the "
                        "history was rewritten or cut back since)"]


@ONE_DATABASE
def test_leads_and_auditors_download_the_history_from_the_case_page(web: Web) -> None:
    from reprisals.proof import verify_export

    ref = web.world.triaged
    for email in (web.world.auditor, web.world.lead):
        client = web.sign_in(email)
        page = client.get(f"/cases/{ref}/timeline").get_data(as_text=True)  # the case page's timeline tab
        assert f'href="/cases/{ref}/export.json"' in page
        response = client.get(f"/cases/{ref}/export.json")
        assert response.status_code == 200 and response.mimetype == "application/json"
        assert f'filename="{ref}-history.json"' in response.headers["Content-Disposition"]
        problems, notes = verify_export(response.get_json(), None)
        assert problems == [] and "nothing signed anchors it" in notes[0]
        assert "CANARYTEXT42" not in response.get_data(as_text=True)
    assert web.database.raw("SELECT count(*) FROM access_log WHERE kind = 'export'")[0][0] == 2
    staff = web.sign_in(web.world.staff)
    assert "export.json" not in staff.get(f"/cases/{ref}/timeline").get_data(as_text=True)
    assert staff.get(f"/cases/{ref}/export.json").status_code == 403
