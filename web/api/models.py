"""The API's request and response bodies. The same pydantic models validate requests, shape
responses and, through spectree, make the OpenAPI document, so the three cannot drift apart.

A new case accepts identity and the description (:class:`NewCase`); a case gives them, its notes and its
free text only inside the reader's unlock window (:class:`SensitiveOut`, ``EventOut.free_text``: POST
/api/cases/{reference}/unlock with a reason; ``reprisals.sensitive``), and each such response is logged.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from reprisals.models import AgeGroup, Channel, Consent, EstablishmentType, Nation, Outcome, Risk, SanctionType
from reprisals.services import DATE_FORM, DATETIME_FORM

MAX_ID = 2**31 - 1
MAX_PAGE = 100_000


# -- strict request types ---------------------------------------------------------------------------
# pydantic's lax mode would take true or "1" for the id 1 and 1713259800 for a datetime; a request
# that says either means something else than it appears to, so it is refused, never coerced. The
# service checks the same again (the command line hands it raw JSON): the messages are its own.


def _whole_number(what: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if type(value) is not int:  # not bool (True == 1), str, float
            raise PydanticCustomError("id_type", f"must be the id of {what}: a whole number, such as 12")
        return value
    return check


def _iso_text(message: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, str):
            raise PydanticCustomError("iso_text", message)
        return value
    return check


EstablishmentId = Annotated[int, BeforeValidator(_whole_number("an establishment")), Field(ge=1, le=MAX_ID)]
UserId = Annotated[int, BeforeValidator(_whole_number("a user")), Field(ge=1, le=MAX_ID)]
IsoDate = Annotated[date, BeforeValidator(_iso_text(DATE_FORM))]
IsoDateTime = Annotated[datetime, BeforeValidator(_iso_text(DATETIME_FORM))]


class _In(BaseModel):
    """A request body or query: unknown names are refused (422), never silently dropped."""

    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors -----------------------------------------------------------------------------------------


class Problem(_Out):
    """An error, as RFC 9457 ``application/problem+json``."""

    type: str = Field(description="Always about:blank: the status and title say what happened.")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    errors: dict[str, str] | None = Field(
        default=None, description="On 422: a message for each field that is missing or invalid.")
    current_version: int | None = Field(default=None, description="On 409: the case's version now.")
    current_stage: str | None = Field(default=None, description="On 409: the case's stage now.")


# -- queries ----------------------------------------------------------------------------------------


class Page(_In):
    page: int = Field(default=1, ge=1, le=MAX_PAGE)
    per_page: int = Field(default=20, ge=1, le=100)


class CaseQuery(Page):
    stage: str | SkipJsonSchema[None] = Field(default=None, max_length=64, pattern=r"^[a-z][a-z0-9_]*$",
                              description="Only cases at this stage (a stage name of the protocol).")
    risk: Risk | SkipJsonSchema[None] = None
    overdue: bool | SkipJsonSchema[None] = Field(default=None, description="true: only cases with an overdue deadline; "
                                                           "false: only cases without one.")
    assigned: str | SkipJsonSchema[None] = Field(
        default=None, pattern=r"^(me|nobody|[1-9][0-9]{0,9})$",
        description="me: only cases assigned to you; nobody: only unassigned cases; a user's id: only theirs "
                    "(a lead or member of staff of your body).")
    # The case list page's other filters (reprisals.readside.case_list: the page and this list are one query).
    reference: str | SkipJsonSchema[None] = Field(default=None, pattern=r"^[A-Za-z0-9-]{1,20}$",
                                                  description="All or the start of a case reference.")
    due: Literal["week"] | SkipJsonSchema[None] = Field(
        default=None, description="week: only cases with a running deadline due in the next 7 days.")
    body: str | SkipJsonSchema[None] = Field(default=None, pattern=r"^[A-Za-z0-9]{1,8}$",
                                             description="Only cases this body owns (its code).")
    nation: Nation | SkipJsonSchema[None] = None
    establishment: int | SkipJsonSchema[None] = Field(default=None, ge=1, le=MAX_ID,
                                                      description="Only cases of this establishment (its id).")
    sort: Literal["received_newest", "received_oldest", "risk", "time_left"] = Field(
        default="received_newest", description="received_newest (the default), received_oldest, risk (most urgent "
                                               "first) or time_left (the nearest running deadline first).")


class DeadlineQuery(Page):
    overdue: bool | SkipJsonSchema[None] = Field(
        default=None, description="true: only overdue deadlines; false: only others.")


class NotificationQuery(_In):
    unread: bool | SkipJsonSchema[None] = Field(default=None, description="true: only unread notifications.")
    limit: int = Field(default=50, ge=1, le=200)


# -- cases ------------------------------------------------------------------------------------------


class EstablishmentOut(_Out):
    id: int
    name: str
    type: str
    nation: Nation


class EstablishmentDetail(EstablishmentOut):
    type: EstablishmentType
    operator: str
    active: bool = Field(description="Cases can be reported against it.")
    address_line_1: str | None
    address_line_2: str | None
    address_line_3: str | None
    town: str | None
    postcode: str | None
    head_of_establishment_title: str | None = Field(description="How letters address the head, such as Governor.")


class EstablishmentList(_Out):
    items: list[EstablishmentDetail]


class DeadlineOut(_Out):
    case_reference: str
    name: str
    label: str
    stage: str
    status: Literal["open", "paused", "overdue"]
    due_at: datetime
    overdue: bool


class DeadlineList(_Out):
    items: list[DeadlineOut]
    page: int
    per_page: int


class DeadlineSummary(_Out):
    running: int = Field(description="Live deadlines (open, paused or overdue).")
    overdue: int
    next_due_at: datetime | None = Field(description="The soonest live deadline.")
    next_label: str | None


class CaseSummary(_Out):
    reference: str
    stage: str
    stage_label: str
    version: int = Field(description="Send as expected_version with an action.")
    risk: Risk
    consent: Consent | None
    owning_body: str
    parties: list[str]
    establishment: EstablishmentOut
    received_at: datetime
    assigned_to_me: bool
    outcome: Outcome | None
    deadlines: DeadlineSummary


class NextStepOut(_Out):
    action: str = Field(description="The protocol's trigger: the stage's next step.")
    label: str
    yours: bool = Field(description="You may take it now (POST /api/cases/{reference}/actions/{action}).")
    by: str | None = Field(description="When it is not yours: who must take it.")


class CaseListItem(CaseSummary):
    next_step: NextStepOut | None = Field(description="The stage's next step (none at a final stage).")
    time_left: str | None = Field(description="The nearest running deadline in words: '3 working days left', "
                                              "'overdue by 5 hours'; when paused, what was left when it was paused.")
    paused: bool = Field(description="Every live deadline is paused.")


class CaseList(_Out):
    items: list[CaseListItem]
    page: int
    per_page: int
    total: int = Field(description="How many cases match, counted up to 10,000 (see total_capped).")
    total_capped: bool = Field(default=False, description="More than 10,000 cases match: total is 10,000, and "
                                                           "only the first 10,000 can be paged through.")


class FieldOut(_Out):
    type: str
    label: str | None
    required: bool
    choices: list[str] | None
    max_length: int | None
    required_when: dict[str, list[str]] | None


class ActionOut(_Out):
    name: str
    label: str
    to_stage: str | None = Field(description="The stage it moves the case to; null when the case stays where it is.")
    fields: dict[str, FieldOut]
    conditions: list[str] = Field(default_factory=list, description=(
        "What the fields must say for the action to be accepted, where that depends on what is typed "
        "(e.g. an override for risk to life when the person has not consented)."))


class EventOut(_Out):
    """A history event, without identity or free text: for an action, the fields that were given and
    the values of those that are not free text (choices, dates, numbers, yes/no)."""

    seq: int
    kind: str
    trigger: str | None
    from_stage: str | None
    to_stage: str | None
    actor_id: str | None
    at: datetime = Field(description="When it was recorded.")
    occurred_at: datetime = Field(description="When it happened (the same as at unless it was recorded later), as "
                                              "corrected if a later event corrects it.")
    corrects_seq: int | None = Field(default=None, description="For a correction: the event it corrects.")
    fields_given: list[str]
    values: dict[str, Any]
    free_text_given: list[str] = Field(description="The free text it recorded, by name: the action's text and "
                                                   "hand-typed fields, or 'reason' for a reason given.")
    free_text: dict[str, str] | None = Field(description="That free text, inside your unlock window; null outside "
                                                         "it.")


class LetterOut(_Out):
    """A letter the case sent (a referral or an escalation) or a response it received."""

    kind: Literal["referral", "escalation", "response"]
    level: int = Field(description="0 for a referral; the escalation's level (1 or 2) for an escalation.")
    recipients: list[str | None] = Field(description="Who the letter went to: the protocol's codes "
                                                     "(head_of_establishment, youth_custody_service, …) or the name "
                                                     "typed for another recipient (null outside your unlock window).")
    on: date = Field(description="The day it was sent or received (UK).")
    response_due: datetime | None = Field(description="For a letter: when the response it asked for is due (its "
                                                      "response deadline, as extended); null for a response.")
    response_received: date | None = Field(description="For a letter: the day the next response was received; "
                                                       "null if none yet, and for a response.")
    responder: str | None = Field(description="For a response: who it came from (establishment, central_authority, "
                                              "department), if recorded.")
    history_seq: int = Field(description="The action in the history that recorded it.")


class IdentityOut(_Out):
    name: str
    number: str | None = Field(description="Prison number or Home Office reference.")
    date_of_birth: str | None


class NoteOut(_Out):
    id: int
    author_id: int
    at: datetime
    text: str


class SensitiveOut(_Out):
    """Shown only inside your unlock window; each response that carries it is recorded in the access log."""

    unlocked_until: datetime = Field(description="When your window ends (30 minutes from your reason).")
    identity: IdentityOut
    description: str
    notes: list[NoteOut] = Field(description="Newest first.")


class CaseDetail(CaseSummary):
    channel: Channel
    age_group: AgeGroup
    sanction_types: list[str]
    detriment_dates: list[str]
    original_contact_date: str | None
    closed_at: datetime | None
    allowed_actions: list[ActionOut]
    live_deadlines: list[DeadlineOut]
    history: list[EventOut]
    letters: list[LetterOut] = Field(description="Letters sent and responses received, oldest first.")
    history_verified: bool = Field(description="The case's history chain, its head and its ledger entry check "
                                               "out: nothing was changed, removed or inserted outside the service.")
    history_problems: list[str] = Field(description="What the check found, when history_verified is false.")
    linked_case: str | None = Field(description="The earlier case this one was opened from (a new case linked "
                                                "to it), if you may see it.")
    linked_cases: list[str] = Field(description="The cases opened from this one, oldest first: those you may see.")
    person: str | None = Field(description="The person's pseudonym (P-XXXX-XXXX-XXXX): the same for every case of "
                                           "this person at the owning body, without their name; null if not "
                                           "linked yet.")
    same_person_cases: list[str] = Field(description="The same person's other cases of the owning body that you "
                                                     "may see, newest first.")
    note_count: int
    may_unlock: bool = Field(description="Whether you may see who the person is (POST .../unlock with a reason).")
    sensitive: SensitiveOut | None = Field(description="Identity, the description and the notes, inside your "
                                                       "unlock window; null outside it.")


class NewCase(_In):
    """The fields of ``open_case``. Identity and the description are accepted, stored encrypted and never
    returned."""

    establishment_id: EstablishmentId
    received_at: IsoDateTime = Field(description="When the concern was received; UK local time if no offset.")
    channel: Channel
    original_contact_date: IsoDate | None = None
    age_group: AgeGroup
    sanction_types: list[SanctionType] = Field(min_length=1, max_length=len(SanctionType))
    detriment_dates: list[IsoDate] = Field(default_factory=list, max_length=50)
    description: str = Field(min_length=1, max_length=10_000)
    risk: Risk
    party_bodies: list[str] = Field(default_factory=list, max_length=10)
    detainee_name: str = Field(min_length=1, max_length=200)
    detainee_number: str | None = Field(default=None, max_length=40)
    detainee_date_of_birth: IsoDate | None = None
    assigned_user_id: UserId | None = None
    linked_case: str | None = Field(
        default=None, max_length=20, description="Open it linked to an earlier case you may see (one closed too long "
        "ago to reopen): that case's reference, such as RPR-2025-0001. Both cases' histories record the link.")


class ActionRequest(_In):
    expected_version: int = Field(ge=1, le=MAX_ID, strict=True,  # strict: true is not version 1
                                  description="The case's version you last read; a different current version is a 409.")
    fields: dict[str, Any] = Field(default_factory=dict, description="The action's fields (see allowed_actions).")
    occurred_at: str | None = Field(
        default=None, max_length=40,
        description="When it happened, if not now: 2025-04-17T10:00 (UK time unless an offset is given) or a "
                    "date (that day, at the previous action's time if that was on the same day, else 12:00; an "
                    "urgent case needs a time). Not in the future, nor before the previous action or the "
                    "case's receipt. Deadlines run from it.")


class UnlockRequest(_In):
    reason: str = Field(min_length=1, max_length=500, description="Why you need to see who the person is. It is "
                        "recorded in the case's history with your name.")


class CorrectionRequest(_In):
    expected_version: int = Field(ge=1, le=MAX_ID, strict=True,
                                  description="The case's version you last read; a different current version is a 409.")
    occurred_at: str = Field(max_length=40, description="When the action really happened: 2025-04-17T10:00 (UK time "
                             "unless an offset is given) or a date. Between the actions before and after it.")
    reason: str = Field(max_length=2000, description="Why the moment recorded was wrong.")


class ExtensionRequest(_In):  # part: deadlines
    expected_version: int = Field(ge=1, le=MAX_ID, strict=True,
                                  description="The case's version you last read; a different current version is a 409.")
    due: IsoDate = Field(description="The new due date, YYYY-MM-DD: the deadline falls due at the end of that "
                         "working day (UK time). A deadline counted in working days must end on a working day of "
                         "the case's nation (not a weekend or bank holiday); a clock-hour one (urgent cases) may "
                         "end on any day.")
    reason: str = Field(max_length=2000, description="Why the deadline is extended.")


# -- notifications ----------------------------------------------------------------------------------


class NotificationOut(_Out):
    id: int
    subject: str
    body: str
    link: str | None
    created_at: datetime
    read_at: datetime | None


class NotificationList(_Out):
    unread_count: int
    items: list[NotificationOut]


class NotificationRead(_Out):
    id: int
    read_at: datetime | None
    unread_count: int


# -- tokens -----------------------------------------------------------------------------------------


class TokenOut(_Out):
    id: int
    name: str
    user_id: int
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenList(_Out):
    items: list[TokenOut]


class OpenApiDocument(BaseModel):
    """This document."""

    model_config = ConfigDict(extra="allow")

    openapi: str
