"""The domain's tables. They share the engine's MetaData so Alembic keeps one history.

A case's stage lives on its workflow instance and is written only by the engine; the case keeps
the domain facts. Identity and free text that may identify a person are stored only as
ciphertext bound to their row (see :mod:`reprisals.crypto`).
"""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from workflow.models import Base, WorkflowInstance


class Nation(enum.StrEnum):
    ENGLAND = "england"
    WALES = "wales"
    SCOTLAND = "scotland"
    NORTHERN_IRELAND = "northern_ireland"


class EstablishmentType(enum.StrEnum):
    PRISON = "prison"
    YOUNG_OFFENDER_INSTITUTION = "young_offender_institution"
    SECURE_TRAINING_CENTRE = "secure_training_centre"
    IMMIGRATION_REMOVAL_CENTRE = "immigration_removal_centre"
    SHORT_TERM_HOLDING_FACILITY = "short_term_holding_facility"
    COURT_CUSTODY = "court_custody"
    ESCORT = "escort"
    POLICE_CUSTODY = "police_custody"


class Role(enum.StrEnum):
    STAFF = "staff"
    LEAD = "lead"
    AUDITOR = "auditor"
    ADMIN = "admin"


# The roles that can read a detainee's identity: an account holding one waits for a lead of its body to
# confirm it (``User.pending``, decision 22). Auditors and admins cannot read identity.
BODY_ROLES = (Role.STAFF, Role.LEAD)


class Channel(enum.StrEnum):
    INSPECTION_INTERVIEW = "inspection_interview"
    SURVEY = "survey"
    IMB_APPLICATION = "imb_application"
    PPO_COMPLAINT = "ppo_complaint"
    LO_VISIT = "lo_visit"
    LETTER = "letter"
    PHONE = "phone"
    VIA_FAMILY_OR_SOLICITOR = "via_family_or_solicitor"


class AgeGroup(enum.StrEnum):
    CHILD = "child"
    ADULT = "adult"


class Risk(enum.StrEnum):
    URGENT = "urgent"
    HIGH = "high"
    STANDARD = "standard"


class Consent(enum.StrEnum):
    FULL = "full"
    ANONYMOUS = "anonymous"
    NONE = "none"


class SanctionType(enum.StrEnum):
    TRANSFER = "transfer"
    LOSS_OF_JOB_OR_ACTIVITY = "loss_of_job_or_activity"
    RECATEGORISATION = "recategorisation"
    RESTRICTED_VISITS = "restricted_visits"
    RESTRICTED_PHONE_OR_CORRESPONDENCE = "restricted_phone_or_correspondence"
    PHYSICAL_ABUSE = "physical_abuse"
    VERBAL_ABUSE_OR_THREATS = "verbal_abuse_or_threats"
    RESTRICTED_FOOD_OR_ENTITLEMENTS = "restricted_food_or_entitlements"
    SEGREGATION = "segregation"
    WORSE_ACCOMMODATION = "worse_accommodation"
    WITHDRAWN_SUPPORT_FOR_RELEASE = "withdrawn_support_for_release"
    INCENTIVE_DOWNGRADE = "incentive_downgrade"
    ADVERSE_REPORT_OR_DISCIPLINARY_CHARGE = "adverse_report_or_disciplinary_charge"
    RETALIATORY_SEARCH = "retaliatory_search"
    PRESSURE_ON_FAMILY = "pressure_on_family"
    OTHER = "other"


class Outcome(enum.StrEnum):
    SUBSTANTIATED = "substantiated"
    PARTLY_SUBSTANTIATED = "partly_substantiated"
    NOT_SUBSTANTIATED = "not_substantiated"
    INCONCLUSIVE = "inconclusive"
    WITHDRAWN = "withdrawn"
    RECORDED_ONLY = "recorded_only"
    LEFT_CUSTODY = "left_custody"
    REFERRED_ELSEWHERE = "referred_elsewhere"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, validate_strings=True, length=48,
                values_callable=lambda e: [m.value for m in e])


class Body(Base):
    __tablename__ = "bodies"

    code: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class Establishment(Base):
    __tablename__ = "establishments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    type: Mapped[EstablishmentType] = mapped_column(_enum(EstablishmentType, "establishment_type"))
    nation: Mapped[Nation] = mapped_column(_enum(Nation, "nation"))
    operator: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Where letters to the head of establishment go, and how they are addressed ("Governor").
    address_line_1: Mapped[str | None] = mapped_column(String(200))
    address_line_2: Mapped[str | None] = mapped_column(String(200))
    address_line_3: Mapped[str | None] = mapped_column(String(200))
    town: Mapped[str | None] = mapped_column(String(100))
    postcode: Mapped[str | None] = mapped_column(String(16))
    head_of_establishment_title: Mapped[str | None] = mapped_column(String(100))


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("(role = 'admin') OR (body_code IS NOT NULL)", name="body_unless_admin"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    body_code: Mapped[str | None] = mapped_column(ForeignKey("bodies.code"))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The in-app inbox always receives; e-mail too unless the user turns it off.
    email_notifications: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime]
    # When a lead of the body (or the operator) confirmed the account for its current role and body; None
    # while it waits. A refusal (by a lead, with a reason for the admin; who refused is in the access log)
    # also deactivates it (decision 22).
    confirmed_at: Mapped[datetime | None]
    refused_at: Mapped[datetime | None]
    refusal_reason: Mapped[str | None] = mapped_column(Text)

    body: Mapped[Body | None] = relationship(lazy="joined")

    @property
    def pending(self) -> bool:
        """Waiting for a lead of its body to confirm it: such an account sees no case content at all."""
        return self.role in BODY_ROLES and self.confirmed_at is None


class CaseSequence(Base):
    """The last reference number used per year; incremented under a row lock, so no gaps."""

    __tablename__ = "case_sequences"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(Integer)


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (
        CheckConstraint("(outcome IS NULL) = (closed_at IS NULL)", name="closed_has_outcome"),
        # The override reason on the case row stands beside consent 'none' only; under version 2, where consent
        # can change, the ground of each override stays in the history of the action that used it.
        CheckConstraint(
            "consent_override_reason IS NULL OR consent = 'none'", name="override_only_without_consent"
        ),
        # The lead's queue: a body's open cases by risk (covering, so counting them reads no table rows).
        Index("ix_cases_owning_body_code_risk_closed_at", "owning_body_code", "risk", "closed_at"),
        # The case list's default order (newest first): read in index order, stop after a page.
        Index("ix_cases_received_at_id", "received_at", "id"),
        Index("ix_cases_current_stage_risk", "current_stage", "risk", "owning_body_code"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str] = mapped_column(String(20), unique=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("wf_instances.id"), unique=True)
    owning_body_code: Mapped[str] = mapped_column(ForeignKey("bodies.code"))
    establishment_id: Mapped[int] = mapped_column(ForeignKey("establishments.id"), index=True)
    receiving_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    assigned_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    received_at: Mapped[datetime]
    channel: Mapped[Channel] = mapped_column(_enum(Channel, "channel"))
    original_contact_date: Mapped[date | None] = mapped_column(Date)
    age_group: Mapped[AgeGroup] = mapped_column(_enum(AgeGroup, "age_group"))
    sanction_types: Mapped[list[str]] = mapped_column(JSON)
    detriment_dates: Mapped[list[str]] = mapped_column(JSON, default=list)
    description_ciphertext: Mapped[str] = mapped_column(Text)
    risk: Mapped[Risk] = mapped_column(_enum(Risk, "risk"))
    # The instance's stage, mirrored by the services after every move (decision 6) so that lists can
    # filter cases on one table's indexes; the instance's own stage stays the truth.
    current_stage: Mapped[str | None] = mapped_column(String(64))
    consent: Mapped[Consent | None] = mapped_column(_enum(Consent, "consent"))
    consent_date: Mapped[date | None] = mapped_column(Date)
    consent_override_reason: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[Outcome | None] = mapped_column(_enum(Outcome, "outcome"))
    closed_at: Mapped[datetime | None]
    # The earlier case this one was opened from ("Open a linked case": too late to reopen it). The earlier
    # case finds the cases opened from it by this column (indexed), in ``services.linked_cases``.
    linked_case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    created_at: Mapped[datetime]

    instance: Mapped[WorkflowInstance] = relationship(lazy="joined", innerjoin=True)
    establishment: Mapped[Establishment] = relationship(lazy="joined", innerjoin=True)
    owning_body: Mapped[Body] = relationship()
    parties: Mapped[list[CaseParty]] = relationship(cascade="all, delete-orphan", lazy="selectin")
    detainee: Mapped[Detainee] = relationship(back_populates="case", uselist=False, lazy="joined")
    assigned_user: Mapped[User | None] = relationship(foreign_keys=[assigned_user_id])
    receiving_user: Mapped[User] = relationship(foreign_keys=[receiving_user_id])
    linked_case: Mapped[Case | None] = relationship(remote_side=[id], foreign_keys=[linked_case_id])

    @property
    def stage(self) -> str:
        return self.instance.stage

    @property
    def party_codes(self) -> set[str]:
        return {p.body_code for p in self.parties}

    def __repr__(self) -> str:  # never identity
        return f"<Case {self.reference}>"


class CaseParty(Base):
    """A body whose contact with the person led to the alleged sanction."""

    __tablename__ = "case_parties"
    __table_args__ = (Index("ix_case_parties_body_code", "body_code", "case_id"),)  # the cases a body is party to

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    body_code: Mapped[str] = mapped_column(ForeignKey("bodies.code"), primary_key=True)


class Detainee(Base):
    """The person. Every identifying field is ciphertext bound to this case."""

    __tablename__ = "detainees"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), unique=True)
    name_ciphertext: Mapped[str] = mapped_column(Text)
    number_ciphertext: Mapped[str | None] = mapped_column(Text)
    date_of_birth_ciphertext: Mapped[str | None] = mapped_column(Text)
    # Pseudonyms (reprisals.pseudonyms, decision 26): keyed hashes of the normalised name, date of birth and
    # number, scoped to the owning body, and the person they were linked to ("P-XXXX-XXXX-XXXX").
    name_hash: Mapped[str | None] = mapped_column(String(64))
    dob_hash: Mapped[str | None] = mapped_column(String(64))
    number_hash: Mapped[str | None] = mapped_column(String(64))
    person: Mapped[str | None] = mapped_column(String(20), index=True)

    case: Mapped[Case] = relationship(back_populates="detainee")

    __table_args__ = (Index("ix_detainees_name_hash", "name_hash"),)


class PersonMatch(Base):
    """Two cases of one body whose names match but whose date of birth or number do not confirm it: offered to
    the owning body's leads as "possibly the same person", to confirm (one person) or dismiss."""

    __tablename__ = "person_matches"
    __table_args__ = (UniqueConstraint("case_id", "other_case_id", name="uq_person_matches_pair"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)  # the newer record
    other_case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    status: Mapped[str] = mapped_column(String(12), default="open")  # open | confirmed | dismissed
    found_at: Mapped[datetime]
    decided_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None]


class CaseContact(Base):
    """A letter sent (referral, escalation) or a response received, for queries and reports."""

    __tablename__ = "case_contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # referral | escalation | response
    level: Mapped[int] = mapped_column(Integer, default=0)
    recipients: Mapped[list[str]] = mapped_column(JSON, default=list)
    on: Mapped[date]
    history_seq: Mapped[int] = mapped_column(Integer)
    by_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))


class CaseNote(Base):
    """A note's text (ciphertext: notes may identify). History records that it was added."""

    __tablename__ = "case_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime]
    text_ciphertext: Mapped[str] = mapped_column(Text)

