"""each case's own key; sensitive text sealed with it, in history too; history rehashed in format 2

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 02:00:00.000000

Decision 20. Each case gets a data key (``case_keys``, wrapped by the configured keys). Its identity,
description and notes move from the configured keys to it; the override reason on the case and recipients
typed by hand are sealed with it; in history, every sensitive field of an action (text and hand-typed
strings of the case's protocol version) and every reason a person typed (HOST_SEALED) become
``{"$sealed": token}``. Because history's hash covers its data, every chain is rebuilt once in hash format 2
(``hash_version``), and then the ledger; ``wf_chain_rebuilds`` records each chain's old head beside its new
one (and the ledger's, with no instance), so an auditor holding an old head can follow it to the new.

It needs the encryption keys when the database holds cases (``reprisals db upgrade`` passes the configured
ones; ``alembic -x keys=KEY1,KEY2``); without them it stops with a message and changes nothing. The
downgrade opens every seal, moves identity, description and notes back under the configured keys, rehashes
in format 1 (the heads recorded as old come back) and drops what this revision added.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from reprisals.crypto import Cipher, generate_key
from workflow.db import append_only_ddl, drop_append_only_ddl
from workflow.models import APPEND_ONLY_TABLES, HistoryEvent, LedgerEntry, UTCDateTime

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEALED = "$sealed"
# Reasons typed into host events (reprisals.sealing.HOST_SEALED, written out: a revision must not change
# when the code does).
HOST_SEALED = {k: ("reason",) for k in ("identity_viewed", "assigned", "action_redated", "deadline_extended",
                                        "deadline_paused", "deadline_resumed")}
NEEDS_KEYS = ("migration 0017 seals each case's sensitive text with its own key and needs the encryption keys "
              "to do it: run `reprisals db upgrade` where REPRISALS_ENCRYPTION_KEYS is set (as the application "
              "runs), or `alembic -x keys=KEY1,KEY2 upgrade head` with those keys. Nothing was changed.")
NEEDS_KEYS_DOWN = ("undoing migration 0017 opens each case's seals and needs the encryption keys to do it: run "
                   "`alembic -x keys=KEY1,KEY2 downgrade 0016` with the keys of REPRISALS_ENCRYPTION_KEYS. Nothing "
                   "was changed.")

instances = sa.table("wf_instances", sa.column("id"), sa.column("spec_key"), sa.column("spec_version"),
                     sa.column("head_seq"), sa.column("head_hash"), sa.column("created_at"))
history = sa.table("wf_history", sa.column("id"), sa.column("instance_id"), sa.column("seq"), sa.column("kind"),
                   sa.column("trigger"), sa.column("from_stage"), sa.column("to_stage"), sa.column("actor_id"),
                   sa.column("at", UTCDateTime()), sa.column("data", sa.JSON()),
                   sa.column("corrects_seq"), sa.column("prev_hash"), sa.column("hash"), sa.column("hash_version"))
ledger = sa.table("wf_ledger", sa.column("seq"), sa.column("instance_id"), sa.column("genesis_hash"),
                  sa.column("prev_hash"), sa.column("hash"), sa.column("hash_version"))
heads = sa.table("wf_chain_heads", sa.column("name"), sa.column("seq"), sa.column("hash"))
rebuilds = sa.table("wf_chain_rebuilds", sa.column("id"), sa.column("instance_id"), sa.column("old_head_seq"),
                    sa.column("old_head_hash"), sa.column("new_head_hash"), sa.column("from_version"),
                    sa.column("to_version"), sa.column("revision"), sa.column("at", sa.DateTime(timezone=True)))
case_keys = sa.table("case_keys", sa.column("instance_id"), sa.column("wrapped"),
                     sa.column("created_at", sa.DateTime(timezone=True)), sa.column("destroyed_at"))
cases = sa.table("cases", sa.column("id"), sa.column("instance_id"), sa.column("description_ciphertext"),
                 sa.column("consent_override_reason"))
detainees = sa.table("detainees", sa.column("id"), sa.column("case_id"), sa.column("name_ciphertext"),
                     sa.column("number_ciphertext"), sa.column("date_of_birth_ciphertext"))
notes = sa.table("case_notes", sa.column("id"), sa.column("case_id"), sa.column("text_ciphertext"))
contacts = sa.table("case_contacts", sa.column("id"), sa.column("case_id"), sa.column("recipients", sa.JSON()),
                    sa.column("history_seq"))


# -- what is sensitive ---------------------------------------------------------------------------------


def _sensitive_fields(conn: sa.Connection) -> dict[tuple[str, int], dict[str, set[str]]]:
    """(spec key, version) -> trigger -> its sensitive fields: the bundled protocol files and those uploaded."""
    from reprisals.protocol import bundled_specs
    from workflow.spec import WorkflowSpec, load_spec

    specs: list[WorkflowSpec] = list(bundled_specs())
    if sa.inspect(conn).has_table("protocol_versions"):
        for (text,) in conn.execute(sa.text("SELECT yaml_text FROM protocol_versions")):
            try:
                specs.append(load_spec(text, source="protocol_versions"))
            except Exception:  # noqa: BLE001,S112 (one that no longer loads cannot have cases we can read)
                continue
    out: dict[tuple[str, int], dict[str, set[str]]] = {}
    for spec in specs:
        out[(spec.key, spec.version)] = {name: {f for f, fs in t.fields.items() if fs.is_sensitive}
                                         for name, t in spec.triggers.items()}
    return out


def _paths(event: Any, fields: dict[str, set[str]]) -> list[str]:
    data = event.data or {}
    if event.kind == "transition" and event.trigger in fields:
        given = data.get("fields") or {}
        return [f"fields.{f}" for f in sorted(fields[event.trigger]) if isinstance(given.get(f), str) and given[f]]
    return [k for k in HOST_SEALED.get(event.kind, ()) if isinstance(data.get(k), str) and data[k]]


def _map_paths(data: dict[str, Any], paths: list[str], fn: Any) -> dict[str, Any]:
    out = dict(data)
    for path in paths:
        head, _, name = path.rpartition(".")
        holder = out
        if head:
            holder = out[head] = dict(out[head])
        holder[name] = fn(path, holder[name])
    return out


def _sealed_paths(data: dict[str, Any]) -> list[str]:
    paths = [f"fields.{k}" for k, v in (data.get("fields") or {}).items() if isinstance(v, dict) and SEALED in v]
    return paths + [k for k, v in data.items() if k != "fields" and isinstance(v, dict) and SEALED in v]


# -- the chain ------------------------------------------------------------------------------------------


def _hash(row: Any, data: dict[str, Any], prev: str, version: int) -> str:
    from workflow.history import event_hash

    return event_hash(HistoryEvent(instance_id=row.instance_id, seq=row.seq, kind=row.kind, trigger=row.trigger,
                                   from_stage=row.from_stage, to_stage=row.to_stage, actor_id=row.actor_id,
                                   at=row.at, data=data, corrects_seq=row.corrects_seq, prev_hash=prev,
                                   hash_version=version))


def _rehash_all(conn: sa.Connection, version: int, transform: Any) -> Iterator[tuple[int, int, str, str]]:
    """Rewrite every chain in ``version`` with each event's data passed through ``transform(instance, row)``;
    then the ledger. Yields (instance or 0 for the ledger, old head seq, old head hash, new head hash)."""
    from workflow.history import genesis_hash, ledger_hash

    first: dict[int, str] = {}
    for inst in conn.execute(sa.select(instances).order_by(instances.c.id)).all():
        prev = genesis_hash(inst.id)
        for row in conn.execute(sa.select(history).where(history.c.instance_id == inst.id)
                                .order_by(history.c.seq)).all():
            data = transform(inst, row)
            new = _hash(row, data, prev, version)
            conn.execute(history.update().where(history.c.id == row.id)
                         .values(data=data, prev_hash=prev, hash=new, hash_version=version))
            if row.seq == 1:
                first[inst.id] = new
            prev = new
        if inst.head_seq:
            conn.execute(instances.update().where(instances.c.id == inst.id).values(head_hash=prev))
            yield inst.id, inst.head_seq, inst.head_hash, prev
    prev_entry = None
    from workflow.history import LEDGER_GENESIS

    prev_hash = LEDGER_GENESIS
    for entry in conn.execute(sa.select(ledger).order_by(ledger.c.seq)).all():
        genesis = first.get(entry.instance_id, entry.genesis_hash)
        new = ledger_hash(LedgerEntry(seq=entry.seq, instance_id=entry.instance_id, genesis_hash=genesis,
                                      prev_hash=prev_hash, hash_version=version))
        conn.execute(ledger.update().where(ledger.c.seq == entry.seq)
                     .values(genesis_hash=genesis, prev_hash=prev_hash, hash=new, hash_version=version))
        prev_entry, prev_hash = entry, new
    old = conn.execute(sa.select(heads).where(heads.c.name == "ledger")).first()
    if old is not None and prev_entry is not None:
        conn.execute(heads.update().where(heads.c.name == "ledger").values(hash=prev_hash))
        yield 0, old.seq, old.hash, prev_hash


def _keys() -> Cipher | None:
    keys = context.config.attributes.get("encryption_keys") or context.get_x_argument(as_dictionary=True).get("keys")
    if not keys:
        return None
    return Cipher([k for k in (keys.split(",") if isinstance(keys, str) else keys) if k.strip()])


def _guards(dialect: str, on: bool) -> None:
    for stmt in (append_only_ddl(dialect, APPEND_ONLY_TABLES) if on
                 else drop_append_only_ddl(dialect, APPEND_ONLY_TABLES, keep_function=True)):
        op.execute(stmt)


# -- upgrade ---------------------------------------------------------------------------------------------


def upgrade() -> None:
    conn = op.get_bind()
    # Offline (--sql) scripts are for new, empty databases: the data cannot be read to be re-encrypted.
    has_cases = (not context.is_offline_mode()
                 and conn.execute(sa.text("SELECT COUNT(*) FROM wf_instances")).scalar_one() > 0)
    master = _keys()
    if has_cases and master is None:
        raise RuntimeError(NEEDS_KEYS)
    op.create_table('case_keys',
    sa.Column('instance_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('wrapped', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('destroyed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['instance_id'], ['wf_instances.id'], name=op.f('fk_case_keys_instance_id_wf_instances')),
    sa.PrimaryKeyConstraint('instance_id', name=op.f('pk_case_keys'))
    )
    op.create_table('wf_chain_rebuilds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=True),
    sa.Column('old_head_seq', sa.Integer(), nullable=False),
    sa.Column('old_head_hash', sa.String(length=64), nullable=False),
    sa.Column('new_head_hash', sa.String(length=64), nullable=False),
    sa.Column('from_version', sa.Integer(), nullable=False),
    sa.Column('to_version', sa.Integer(), nullable=False),
    sa.Column('revision', sa.String(length=32), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wf_chain_rebuilds'))
    )
    op.add_column('wf_history', sa.Column('hash_version', sa.Integer(), server_default='2', nullable=False))
    op.add_column('wf_ledger', sa.Column('hash_version', sa.Integer(), server_default='2', nullable=False))
    if not has_cases:
        return
    assert master is not None
    now = datetime.now(UTC)
    sensitive = _sensitive_fields(conn)
    keys: dict[int, Cipher] = {}
    for case in conn.execute(sa.select(cases)).all():
        key = generate_key()
        conn.execute(case_keys.insert().values(instance_id=case.instance_id, created_at=now,
                                               wrapped=master.encrypt(f"case-key:{case.instance_id}", key)))
        mine = keys[case.instance_id] = Cipher([key])

        def move(scope: str, token: str | None, mine: Cipher = mine) -> str | None:
            return None if token is None else mine.encrypt(scope, master.decrypt(scope, token))

        scope = f"case:{case.id}:description"
        values: dict[str, Any] = {"description_ciphertext": move(scope, case.description_ciphertext)}
        if case.consent_override_reason is not None:
            ground, _, typed = case.consent_override_reason.partition(": ")  # the reason sealed, the ground kept
            values["consent_override_reason"] = f"{ground}: {mine.encrypt(f'case:{case.id}:override', typed)}"
        conn.execute(cases.update().where(cases.c.id == case.id).values(**values))
        for d in conn.execute(sa.select(detainees).where(detainees.c.case_id == case.id)).all():
            conn.execute(detainees.update().where(detainees.c.id == d.id).values(
                name_ciphertext=move(f"detainee:{case.id}:name", d.name_ciphertext),
                number_ciphertext=move(f"detainee:{case.id}:number", d.number_ciphertext),
                date_of_birth_ciphertext=move(f"detainee:{case.id}:date_of_birth", d.date_of_birth_ciphertext)))
        for n in conn.execute(sa.select(notes).where(notes.c.case_id == case.id)).all():
            conn.execute(notes.update().where(notes.c.id == n.id)
                         .values(text_ciphertext=move(f"note:{n.id}", n.text_ciphertext)))

    spec_of = {i.id: (i.spec_key, i.spec_version) for i in conn.execute(sa.select(instances)).all()}
    typed: dict[tuple[int, int], str] = {}  # (instance, seq) -> the recipient typed by hand, as it was

    def seal(inst: Any, row: Any) -> dict[str, Any]:
        data = dict(row.data or {})
        fields = sensitive.get(spec_of[inst.id], {})
        given = data.get("fields") or {}
        if row.kind == "transition" and row.trigger in fields:
            if given.get("recipient") == "other" and given.get("recipient_other"):
                typed[(inst.id, row.seq)] = given["recipient_other"]
            elif "recipient" in fields[row.trigger] and given.get("recipient"):
                typed[(inst.id, row.seq)] = given["recipient"]
        key = keys.get(inst.id)
        if key is None:  # an instance without a case: nothing of a person in it
            return data
        return _map_paths(data, _paths(row, fields), lambda path, value: {
            SEALED: key.encrypt(f"wf:{inst.id}:{row.seq}:{path}", value)})

    dialect = conn.dialect.name
    _guards(dialect, on=False)
    for instance_id, old_seq, old_hash, new_hash in list(_rehash_all(conn, 2, seal)):
        conn.execute(rebuilds.insert().values(instance_id=instance_id or None, old_head_seq=old_seq,
                                              old_head_hash=old_hash, new_head_hash=new_hash, from_version=1,
                                              to_version=2, revision="0017", at=now))
    _guards(dialect, on=True)
    instance_of = {c.id: c.instance_id for c in conn.execute(sa.select(cases)).all()}
    for c in conn.execute(sa.select(contacts)).all():
        iid = instance_of[c.case_id]
        text = typed.get((iid, c.history_seq))
        if text and text in (c.recipients or []):
            recipients = [{SEALED: keys[iid].encrypt(f"contact:{c.history_seq}:recipient", r)} if r == text else r
                          for r in c.recipients]
            conn.execute(contacts.update().where(contacts.c.id == c.id).values(recipients=recipients))


# -- downgrade -------------------------------------------------------------------------------------------


def downgrade() -> None:
    conn = op.get_bind()
    has_keys = (not context.is_offline_mode()
                and conn.execute(sa.text("SELECT COUNT(*) FROM case_keys")).scalar_one() > 0)
    master = _keys()
    if has_keys and master is None:
        raise RuntimeError(NEEDS_KEYS_DOWN)
    if has_keys:
        assert master is not None
        keys: dict[int, Cipher] = {}
        for row in conn.execute(sa.select(case_keys)).all():
            if row.wrapped is None:
                raise RuntimeError(f"migration 0017 cannot be reversed: a case's key was destroyed (instance "
                                   f"{row.instance_id}); its sealed text no longer exists in any form")
            keys[row.instance_id] = Cipher([master.decrypt(f"case-key:{row.instance_id}", row.wrapped)])

        def unseal(inst: Any, row: Any) -> dict[str, Any]:
            data = dict(row.data or {})
            key = keys.get(inst.id)
            if key is None:
                return data
            return _map_paths(data, _sealed_paths(data), lambda path, value: key.decrypt(
                f"wf:{inst.id}:{row.seq}:{path}", value[SEALED]))

        dialect = conn.dialect.name
        recorded = {r.instance_id or 0: (r.old_head_seq, r.old_head_hash)
                    for r in conn.execute(sa.select(rebuilds).where(rebuilds.c.revision == "0017")).all()}
        _guards(dialect, on=False)
        for instance_id, seq, _, back in list(_rehash_all(conn, 1, unseal)):
            old = recorded.get(instance_id)
            if old is not None and old[0] == seq and old[1] != back:
                raise RuntimeError(f"migration 0017 downgrade: chain {instance_id or 'of the ledger'} does not come "
                                   "back to the head recorded before the upgrade (history altered since?)")
        _guards(dialect, on=True)
        for case in conn.execute(sa.select(cases)).all():
            mine = keys[case.instance_id]

            def back_(scope: str, token: str | None, mine: Cipher = mine) -> str | None:
                return None if token is None else master.encrypt(scope, mine.decrypt(scope, token))

            values: dict[str, Any] = {"description_ciphertext": back_(f"case:{case.id}:description",
                                                                      case.description_ciphertext)}
            if case.consent_override_reason is not None:
                ground, _, token = case.consent_override_reason.partition(": ")
                values["consent_override_reason"] = f"{ground}: {mine.decrypt(f'case:{case.id}:override', token)}"
            conn.execute(cases.update().where(cases.c.id == case.id).values(**values))
            for d in conn.execute(sa.select(detainees).where(detainees.c.case_id == case.id)).all():
                conn.execute(detainees.update().where(detainees.c.id == d.id).values(
                    name_ciphertext=back_(f"detainee:{case.id}:name", d.name_ciphertext),
                    number_ciphertext=back_(f"detainee:{case.id}:number", d.number_ciphertext),
                    date_of_birth_ciphertext=back_(f"detainee:{case.id}:date_of_birth", d.date_of_birth_ciphertext)))
            for n in conn.execute(sa.select(notes).where(notes.c.case_id == case.id)).all():
                conn.execute(notes.update().where(notes.c.id == n.id)
                             .values(text_ciphertext=back_(f"note:{n.id}", n.text_ciphertext)))
            for c in conn.execute(sa.select(contacts).where(contacts.c.case_id == case.id)).all():
                if any(isinstance(r, dict) for r in c.recipients or []):
                    conn.execute(contacts.update().where(contacts.c.id == c.id).values(recipients=[
                        mine.decrypt(f"contact:{c.history_seq}:recipient", r[SEALED]) if isinstance(r, dict) else r
                        for r in c.recipients]))
    dialect = conn.dialect.name
    # SQLite rebuilds the tables to drop a column, and with them their triggers: off first, on again after.
    _guards(dialect, on=False)
    with op.batch_alter_table('wf_ledger', schema=None) as batch_op:
        batch_op.drop_column('hash_version')
    with op.batch_alter_table('wf_history', schema=None) as batch_op:
        batch_op.drop_column('hash_version')
    _guards(dialect, on=True)
    op.drop_table('wf_chain_rebuilds')
    op.drop_table('case_keys')
