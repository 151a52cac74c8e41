"""The engine: fires triggers on workflow instances, appends hash-chained history.

Contract for every public function that writes: it takes the caller's session, flushes, and never
commits; the caller owns the transaction. A refusal (unknown trigger, wrong stage, role, fields,
guard, stale version) raises a typed :mod:`workflow.errors` error before anything is changed.
If the database itself detects a concurrent writer at flush time, ``StaleInstance`` is raised and
the session must be rolled back by its owner (SQLAlchemy has already rolled back the transaction).

`transitions` is the state machine: one ``Machine`` per spec version, built once, with no models
registered and ``auto_transitions`` off. An instance is handed to the machine only for the duration
of one trigger (``machine.events[name].trigger(instance)``), so it is never reset, never retained and
never given ``to_<stage>`` methods.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session
from sqlalchemy.orm.exc import StaleDataError
from transitions import Machine, MachineError

from workflow.clock import ensure_utc
from workflow.errors import (
    GuardFailed,
    MissingFields,
    NotPermitted,
    Problem,
    SpecError,
    StaleInstance,
    TransitionNotAllowed,
    UnknownSpec,
    UnknownTrigger,
)
from workflow.fields import LONDON, check_fields
from workflow.history import HASH_VERSION, LEDGER, LEDGER_GENESIS, event_hash, genesis_hash, ledger_hash
from workflow.models import ChainHead, HistoryEvent, LedgerEntry, WorkflowInstance
from workflow.moments import local_words
from workflow.spec import Trigger, WorkflowSpec


class Actor(Protocol):
    """Who acts, and the roles they hold *for this instance* (the host decides what that means)."""

    @property
    def id(self) -> str: ...

    @property
    def roles(self) -> frozenset[str]: ...


class Sealer(Protocol):
    """The host's encryption of sensitive values in history (a field marked sensitive, a reason typed by a
    person): ``seal`` turns the text into what is stored — and hashed — in the event's data. The engine
    itself never reads a sealed value."""

    def seal(self, session: Session, instance: WorkflowInstance, scope: str, value: str) -> Any: ...


@dataclass(frozen=True)
class SimpleActor:
    id: str
    roles: frozenset[str] = frozenset()


@dataclass(frozen=True)
class GuardContext:
    instance: WorkflowInstance
    trigger: Trigger
    actor: Actor
    fields: Mapping[str, Any]
    now: datetime
    # Variables as they will be after the trigger (current ones updated with the fields).
    variables: Mapping[str, Any]
    # When the action happened (``now`` unless the person gave an earlier moment).
    occurred_at: datetime | None = None
    # The instance's spec version (guards read host rules from it, ``spec.rules``).
    spec: WorkflowSpec | None = None
    # True when the engine asks which actions to offer before anyone has typed anything (``offers``): the
    # fields are empty, and a guard whose answer depends on them returns a ``Condition`` saying what they
    # must say, instead of refusing.
    probe: bool = False

    @property
    def moment(self) -> datetime:
        return self.occurred_at or self.now


class Condition(str):
    """A guard's answer while probing (``GuardContext.probe``): the action may be offered, on this
    condition about what the person types (e.g. "only with an override for risk to life")."""


# A guard returns None when the trigger may proceed, or a message saying why it may not.
Guard = Callable[[GuardContext], str | None]


@dataclass(frozen=True)
class Offer:
    """An action the actor may take now, and the conditions its fields must meet (empty: none)."""

    trigger: Trigger
    conditions: tuple[str, ...] = ()


@dataclass(frozen=True)
class StageChange:
    instance: WorkflowInstance
    spec: WorkflowSpec
    trigger: str | None
    from_stage: str | None
    to_stage: str
    now: datetime  # when the change was recorded
    event: HistoryEvent
    # When it happened (the moment the person gave; ``now`` when they gave none). Deadlines run from it.
    occurred_at: datetime | None = None
    # A trigger that left the stage as it was: only the deadlines it names in ``closes`` end.
    stays: bool = False
    closes: tuple[str, ...] = ()

    @property
    def moment(self) -> datetime:
        return self.occurred_at or self.now


# Called inside the transaction after the stage moved and history was appended (timers hook here).
StageListener = Callable[[Session, StageChange], None]


class _Model:
    """What the machine sees of an instance: only the stage attribute."""

    __slots__ = ("stage",)

    def __init__(self, stage: str) -> None:
        self.stage = stage


@dataclass
class _Compiled:
    spec: WorkflowSpec
    machine: Machine


@dataclass
class Engine:
    """Registry of specs and guards, and the operations on instances. Build one per process."""

    guards: dict[str, Guard] = field(default_factory=dict)
    listeners: list[StageListener] = field(default_factory=list)
    # Validates an instance's calendar name before anything is written (set by workflow.deadlines).
    calendar_check: Callable[[str | None], object] | None = None
    # Finds a spec version this process has not registered (e.g. uploaded to the database by another
    # process): called with the instance's session, key and version; returns the spec or None.
    loader: Callable[[Session, str, int], WorkflowSpec | None] | None = None
    # Seals sensitive field values and named reasons before they are hashed into history (None: stored as given).
    sealer: Sealer | None = None
    # Where "today" is for a not_future date field (a date typed by a person is a local date).
    zone: tzinfo = LONDON
    # How refusals name the moment an instance started (``start``'s ``occurred_at``), e.g. "the case was
    # received".
    began_as: str = "the start"
    # The host's own checks of a spec (e.g. that the triggers it depends on exist, with the right shape):
    # problems make ``register`` refuse the spec.
    spec_check: Callable[[WorkflowSpec], list[Problem]] | None = None
    _specs: dict[tuple[str, int], _Compiled] = field(default_factory=dict)

    # -- specs ---------------------------------------------------------------------------------

    def register(self, spec: WorkflowSpec) -> None:
        """Add a spec version. Every guard it names must already be registered."""
        problems = [
            Problem(f"triggers.{t.name}.guards[{i}]", f"unknown guard '{g}'")
            for t in spec.triggers.values()
            for i, g in enumerate(t.guards)
            if g not in self.guards
        ]
        if self.spec_check is not None:
            problems += self.spec_check(spec)
        if problems:
            raise SpecError(spec.source, problems)
        existing = self._specs.get((spec.key, spec.version))
        if existing is not None:
            if existing.spec.text != spec.text:
                raise SpecError(spec.source, [Problem("version", f"{spec.key} version {spec.version} is already "
                                                      "registered with different content; bump the version")])
            return
        machine = Machine(
            model=None,
            states=list(spec.stages),
            initial=spec.initial,
            transitions=[
                {"trigger": t.name, "source": list(t.sources), "dest": t.dest} for t in spec.triggers.values()
            ],
            auto_transitions=False,
            ignore_invalid_triggers=False,
            model_attribute="stage",
            name=f"{spec.key}@{spec.version}",
        )
        self._specs[(spec.key, spec.version)] = _Compiled(spec, machine)

    def spec(self, key: str, version: int | None = None) -> WorkflowSpec:
        return self._compiled(key, version).spec

    def versions(self, key: str) -> list[int]:
        return sorted(v for k, v in self._specs if k == key)

    def machine(self, key: str, version: int) -> Machine:
        return self._compiled(key, version).machine

    def _compiled(self, key: str, version: int | None) -> _Compiled:
        if version is None:
            versions = self.versions(key)
            if not versions:
                raise UnknownSpec(key)
            version = versions[-1]
        try:
            return self._specs[(key, version)]
        except KeyError:
            raise UnknownSpec(key, version) from None

    def spec_of(self, instance: WorkflowInstance) -> WorkflowSpec:
        key, version = instance.spec_key, instance.spec_version
        if (key, version) not in self._specs and self.loader is not None:
            session = object_session(instance)
            found = self.loader(session, key, version) if session is not None else None
            if found is not None:
                self.register(found)
        return self._compiled(key, version).spec

    # -- instances -----------------------------------------------------------------------------

    def start(
        self,
        session: Session,
        spec_key: str,
        actor: Actor,
        now: datetime,
        variables: Mapping[str, Any] | None = None,
        *,
        version: int | None = None,
        calendar: str | None = None,
        data: Mapping[str, Any] | None = None,
        occurred_at: datetime | None = None,
    ) -> WorkflowInstance:
        """Create an instance at the spec's initial stage, with its first event and ledger entry.

        ``occurred_at`` is when it really began (a concern received yesterday and recorded today): no
        action of the instance may be dated before it. By default ``now``."""
        now = ensure_utc(now)
        began = ensure_utc(occurred_at) if occurred_at is not None else now
        if began > now:
            raise ValueError("an instance cannot begin in the future")
        compiled = self._compiled(spec_key, version)
        spec = compiled.spec
        if self.calendar_check is not None:
            self.calendar_check(calendar)
        instance = WorkflowInstance(
            spec_key=spec.key,
            spec_version=spec.version,
            stage=spec.initial,
            variables=dict(variables or {}),
            calendar=calendar,
            created_at=now,
            stage_entered_at=began,
            updated_at=now,
            began_at=began,
            acted_at=began,
            head_seq=0,
            head_hash="",
        )
        session.add(instance)
        session.flush()
        event = self._append(session, instance, kind="created", actor_id=actor.id, now=now,
                             data={"spec": f"{spec.key}@{spec.version}", **(data or {}),
                                   "occurred_at": began.isoformat()},
                             to_stage=spec.initial)
        self._ledger_append(session, instance.id, event.hash)
        session.flush()
        change = StageChange(instance, spec, None, None, spec.initial, now, event, began)
        for listener in self.listeners:
            listener(session, change)
        return instance

    def allowed_triggers(self, instance: WorkflowInstance, actor: Actor) -> list[Trigger]:
        """Triggers the actor may attempt from the current stage (stage and role; guards not run)."""
        spec = self.spec_of(instance)
        return [t for t in spec.triggers_from(instance.stage) if t.roles & actor.roles]

    def offers(self, instance: WorkflowInstance, actor: Actor, now: datetime) -> list[Offer]:
        """The actions to offer the actor now: stage and role allow them, and every guard passes that does
        not depend on what the person types; those that do are offered with their ``Condition``."""
        out: list[Offer] = []
        for trig in self.allowed_triggers(instance, actor):
            conditions, refusal = self.probe(instance, trig, actor, now)
            if refusal is None:
                out.append(Offer(trig, tuple(conditions)))
        return out

    def probe(self, instance: WorkflowInstance, trig: Trigger, actor: Actor,
              now: datetime) -> tuple[list[str], str | None]:
        """Run ``trig``'s guards before anything is typed: the conditions its fields must meet, and the
        refusal of the first guard that fails whatever is typed (None if none does)."""
        ctx = GuardContext(instance, trig, actor, {}, ensure_utc(now), self._next_variables(instance, trig, {}, None),
                           None, self.spec_of(instance), probe=True)
        conditions: list[str] = []
        for name in trig.guards:
            answer = self.guards[name](ctx)
            if isinstance(answer, Condition):
                conditions.append(str(answer))
            elif answer:
                return conditions, answer
        return conditions, None

    def check(
        self,
        instance: WorkflowInstance,
        trigger: str,
        actor: Actor,
        fields: Mapping[str, Any] | None,
        now: datetime,
        *,
        expected_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> tuple[Trigger, dict[str, Any]]:
        """Every refusal check of :meth:`fire`, without changing anything. Returns the clean fields."""
        spec = self.spec_of(instance)
        trig = spec.triggers.get(trigger) if isinstance(trigger, str) else None
        if trig is None:
            raise UnknownTrigger(str(trigger), spec.key)
        if expected_version is not None and expected_version != instance.version:
            raise StaleInstance(instance.id, expected_version, instance.version)
        if instance.stage not in trig.sources:
            raise TransitionNotAllowed(trig.name, instance.stage)
        if not trig.roles & actor.roles:
            raise NotPermitted(trig.name, sorted(actor.roles), sorted(trig.roles))
        clean, errors = check_fields(trig.fields, fields or {}, now=ensure_utc(now), zone=self.zone)
        if occurred_at is not None:
            problem = self.moment_problem(instance, trig, occurred_at, now)
            if problem:
                errors["occurred_at"] = problem
        if errors:
            raise MissingFields(trig.name, errors)
        variables = self._next_variables(instance, trig, clean, None)
        ctx = GuardContext(instance, trig, actor, clean, now, variables, occurred_at, spec)
        for name in trig.guards:
            message = self.guards[name](ctx)
            if message:
                raise GuardFailed(trig.name, name, message)
        return trig, clean

    def moment_problem(self, instance: WorkflowInstance, trig: Trigger, occurred_at: datetime,
                       now: datetime) -> str | None:
        """Why ``occurred_at`` cannot be when ``trig`` happened on ``instance``, or None: it is in the future,
        before the instance began, or before its previous protocol action (equal moments are allowed; a
        trigger marked ``backdate`` may be dated before the previous action, a fact learned late)."""
        at, now = ensure_utc(occurred_at), ensure_utc(now)
        if at > now:
            return "must not be in the future"
        began = instance.began_at or instance.created_at
        if at < ensure_utc(began):
            return f"must not be before {self.began_as} ({local_words(began, self.zone)})"
        acted = instance.acted_at or instance.stage_entered_at
        if not trig.backdate and at < ensure_utc(acted):
            return f"must not be before the previous action, which happened at {local_words(acted, self.zone)}"
        return None

    def fire(
        self,
        session: Session,
        instance: WorkflowInstance,
        trigger: str,
        actor: Actor,
        fields: Mapping[str, Any] | None,
        now: datetime,
        *,
        expected_version: int | None = None,
        variables: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        occurred_at: datetime | None = None,
    ) -> HistoryEvent:
        """Fire a trigger: check, move the stage, update variables, append history, flush.

        ``now`` is when it is recorded (the event's ``at``); ``occurred_at`` when it happened, if earlier:
        it is recorded in the event's data (hashed with it), the stage's deadlines run from it and the old
        stage's deadlines are closed at it. ``variables`` are extra instance variables the host sets with
        this move (e.g. an escalation level); ``data`` is extra host data recorded in the event beside the
        fields.
        """
        now = ensure_utc(now)
        # Only a moment the person gave is checked against the previous action: the clock of the server
        # recording it (which may differ slightly between servers) is taken as it is.
        moment = ensure_utc(occurred_at) if occurred_at is not None else now
        trig, clean = self.check(instance, trigger, actor, fields, now, expected_version=expected_version,
                                 occurred_at=occurred_at)
        self.lock(session, instance)
        compiled = self._compiled(instance.spec_key, instance.spec_version)
        source = instance.stage
        model = _Model(source)
        try:
            compiled.machine.events[trig.name].trigger(model)
        except MachineError:  # the checks above make this unreachable unless the spec and machine disagree
            raise TransitionNotAllowed(trig.name, source) from None
        instance.stage = model.stage
        acted = ensure_utc(instance.acted_at or instance.stage_entered_at)
        instance.variables = self._next_variables(instance, trig, clean, variables)
        if not trig.stays:
            instance.stage_entered_at = moment
        instance.acted_at = max(acted, moment)  # a backdated fact does not move it back
        event_data: dict[str, Any] = {"fields": clean, "occurred_at": moment.isoformat()}
        if variables:  # what the host set with this move is part of the audited record
            event_data["variables"] = dict(variables)
        if data:
            event_data.update(data)
        event = self._append(session, instance, kind="transition", actor_id=actor.id, now=now,
                             data=event_data, trigger=trig.name, from_stage=source, to_stage=model.stage,
                             sealed=[f"fields.{k}" for k in clean if trig.fields[k].is_sensitive])
        self._flush(session, instance)
        change = StageChange(instance, compiled.spec, trig.name, source, model.stage, now, event, moment,
                             stays=trig.stays, closes=trig.closes)
        for listener in self.listeners:
            listener(session, change)
        return event

    def append_event(
        self,
        session: Session,
        instance: WorkflowInstance,
        kind: str,
        actor_id: str | None,
        now: datetime,
        data: Mapping[str, Any] | None = None,
        *,
        corrects_seq: int | None = None,
        expected_version: int | None = None,
        sealed: Collection[str] = (),
    ) -> HistoryEvent:
        """Append a host event (a note, an assignment, an identity view) to the instance's chain. The values
        of ``data`` named in ``sealed`` (a reason typed by a person) are sealed by the engine's sealer."""
        now = ensure_utc(now)
        if kind in ("created", "transition"):
            raise ValueError(f"event kind '{kind}' is reserved for the engine")
        if expected_version is not None and expected_version != instance.version:
            raise StaleInstance(instance.id, expected_version, instance.version)
        if corrects_seq is not None and not 1 <= corrects_seq <= instance.head_seq:
            raise ValueError(f"event {corrects_seq} does not exist in this history")
        self.lock(session, instance)
        event = self._append(session, instance, kind=kind, actor_id=actor_id, now=now,
                             data=dict(data or {}), corrects_seq=corrects_seq, sealed=sealed)
        self._flush(session, instance)
        return event

    def lock(self, session: Session, instance: WorkflowInstance) -> None:
        """Take the instance's row lock before any other row of it is locked or written (decision 7: the
        instance, then its timers, then its deadlines), and refuse if it changed since it was read.

        On PostgreSQL ``SELECT … FOR UPDATE`` waits for a concurrent writer of the case to finish; SQLite
        ignores it (its ``BEGIN IMMEDIATE`` already serialises writers). Either way the row's version is
        compared with the one read: ``StaleInstance`` if another transaction moved it, before anything is
        written. ``fire`` and ``append_event`` call it before they write: their history row would otherwise
        take its ``(instance_id, seq)`` index entry before the instance's lock, and a lead holding that lock
        would then wait for the entry while this waits for the lock."""
        instance_id = instance.id
        with session.no_autoflush:  # pending changes to other rows must not be written (locked) before it
            locked = session.scalar(select(WorkflowInstance.version).where(WorkflowInstance.id == instance_id)
                                    .with_for_update())
        if locked != instance.version:
            raise StaleInstance(instance_id, instance.version, locked)

    def history(self, session: Session, instance: WorkflowInstance) -> list[HistoryEvent]:
        stmt = select(HistoryEvent).where(HistoryEvent.instance_id == instance.id).order_by(HistoryEvent.seq)
        return list(session.scalars(stmt))

    # -- internals -----------------------------------------------------------------------------

    @staticmethod
    def _next_variables(
        instance: WorkflowInstance, trig: Trigger, clean: Mapping[str, Any], extra: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        out = dict(instance.variables)
        out.update({k: v for k, v in clean.items() if trig.fields[k].variable})
        out.update(trig.sets)
        out.update(extra or {})
        return out

    def _append(
        self,
        session: Session,
        instance: WorkflowInstance,
        *,
        kind: str,
        actor_id: str | None,
        now: datetime,
        data: dict[str, Any],
        trigger: str | None = None,
        from_stage: str | None = None,
        to_stage: str | None = None,
        corrects_seq: int | None = None,
        sealed: Collection[str] = (),
    ) -> HistoryEvent:
        seq = instance.head_seq + 1
        prev = instance.head_hash if instance.head_seq else genesis_hash(instance.id)
        plain = data
        if sealed and self.sealer is not None:
            data = self._sealed(session, instance, seq, data, sealed)
        event = HistoryEvent(
            instance_id=instance.id, seq=seq, kind=kind, trigger=trigger, from_stage=from_stage,
            to_stage=to_stage, actor_id=actor_id, at=now, data=data, corrects_seq=corrects_seq, prev_hash=prev,
            hash_version=HASH_VERSION,
        )
        event.__dict__["_plain_data"] = plain  # HistoryEvent.plain_data: for the host, in this transaction
        event.hash = event_hash(event)
        session.add(event)
        # Moving the head bumps the instance's version: a concurrent append loses, never forks.
        instance.head_seq = seq
        instance.head_hash = event.hash
        instance.updated_at = now
        return event

    def _sealed(self, session: Session, instance: WorkflowInstance, seq: int, data: dict[str, Any],
                paths: Collection[str]) -> dict[str, Any]:
        """A copy of ``data`` whose values at ``paths`` (``reason``, ``fields.summary``) are sealed by the host:
        text that is empty or absent stays as it is."""
        assert self.sealer is not None
        out = dict(data)
        for path in paths:
            head, _, name = path.rpartition(".")
            holder = out
            if head:
                inner = out.get(head)
                if not isinstance(inner, dict):
                    continue
                holder = out[head] = dict(inner)
            value = holder.get(name)
            if isinstance(value, str) and value:
                holder[name] = self.sealer.seal(session, instance, f"wf:{instance.id}:{seq}:{path}", value)
        return out

    def _flush(self, session: Session, instance: WorkflowInstance) -> None:
        # Read the id first: a failed flush expires the instance, and loading it again would raise
        # PendingRollbackError instead of the StaleInstance the caller expects.
        instance_id = instance.id
        try:
            session.flush()
        except StaleDataError:
            raise StaleInstance(instance_id) from None
        except IntegrityError as exc:
            if "wf_history" in str(exc.orig) or "uq_wf_history_instance_seq" in str(exc.orig):
                raise StaleInstance(instance_id) from None
            raise

    def _ledger_append(self, session: Session, instance_id: int, genesis: str) -> None:
        """Chain the instance's birth into the global ledger, serialised on the head row."""
        head = session.scalars(
            select(ChainHead).where(ChainHead.name == LEDGER).with_for_update()
        ).one_or_none()
        if head is None:
            head = ChainHead(name=LEDGER, seq=0, hash=LEDGER_GENESIS)
            session.add(head)
            session.flush()
        entry = LedgerEntry(seq=head.seq + 1, instance_id=instance_id, genesis_hash=genesis,
                            prev_hash=head.hash, hash_version=HASH_VERSION)
        entry.hash = ledger_hash(entry)
        session.add(entry)
        # A compare-and-set on the head: on SQLite (no row locks) a lost race shows as 0 rows.
        result = session.execute(
            update(ChainHead)
            .where(ChainHead.name == LEDGER, ChainHead.seq == head.seq)
            .values(seq=entry.seq, hash=entry.hash)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 1) != 1:
            raise StaleInstance(instance_id)
        session.expire(head)

