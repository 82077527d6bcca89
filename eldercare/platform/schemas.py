"""Request and response models of the HTTP API (pydantic); they are the OpenAPI description."""

from __future__ import annotations

import functools
import re
import unicodedata
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, TypeVar, get_args

import annotated_types as at
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic import (
    Strict as PydanticStrict,
)
from pydantic_core import PydanticCustomError

from eldercare import i18n
from eldercare.platform import device_health as health
from eldercare.platform.errors import worded
from eldercare.platform.limits import clip_depth

Ident = str  # documented constraint below
IDENT_PATTERN = worded(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$", "error.validation.pattern.ident")
IDENT = Field(
    pattern=IDENT_PATTERN,
    description="letters, digits, . _ : - (wire protocol ids)",
)


def _known_locale(v: str) -> str:
    if v not in i18n.LOCALES:
        raise PydanticCustomError(
            "literal_error",
            "Input should be one of {expected}",
            {"expected": ", ".join(f"'{loc}'" for loc in i18n.LOCALES)},
        )
    return v


# A language of the message catalogue (eldercare/i18n/<locale>.json).
Locale = Annotated[str, AfterValidator(_known_locale), Field(json_schema_extra={"enum": list(i18n.LOCALES)})]
Role = Literal["admin", "care_worker", "family", "tester"]
TIER_TARGET = r"^(family|assigned_worker|station_on_duty|institution_on_duty|provider:[a-z0-9][a-z0-9_-]*)$"


# Input limits shared by every request model and parameter (docs/security.md, "Input limits").
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
MAX_TEXT = 10_000  # default for any string field of a request body without a tighter limit
MAX_NAME = 200
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
STORED_JSON_DEPTH = 32  # deeper stored JSON (from before the request limit) is clipped on output

DbId = Annotated[int, at.Ge(1), at.Le(INT64_MAX)]  # a bigserial id, in a path, query or body
Count = Annotated[int, at.Ge(0), at.Le(INT32_MAX)]


def _instant_in_range(v: datetime) -> datetime:
    if v.tzinfo is None:  # a time of which zone? Compared with "now" it was a 500, stored the server's
        raise PydanticCustomError("no_timezone", "must carry a time zone, such as 2026-01-05T08:00Z")
    if not EARLIEST <= v <= LATEST:
        raise _out_of_years()
    return v


def _day_in_range(v: date) -> date:
    if not EARLIEST.date() <= v <= LATEST.date():
        raise _out_of_years()
    return v


def _out_of_years() -> PydanticCustomError:
    return PydanticCustomError(
        "year_out_of_range",
        "must lie between {earliest} and {latest}",
        {"earliest": EARLIEST.year, "latest": LATEST.year},
    )


def _visible(v: str) -> str:
    """A name or a note someone must read: at least one character that shows (" ", a zero-width
    space or a lone direction mark made a resident, a worker or a note nobody can see)."""
    if not any(unicodedata.category(ch)[0] not in "ZC" for ch in v):
        raise PydanticCustomError("blank_text", "must have at least one visible character")
    return v


_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _written_as(kind: str) -> Any:
    """Refuse a bare number where the schema says an ISO 8601 string: pydantic would read
    ``since=0.5`` as half a second after 1970, an answer about a time nobody asked for."""

    def check(v: Any) -> Any:
        if isinstance(v, int | float) or (isinstance(v, str) and _NUMBER.fullmatch(v)):
            raise PydanticCustomError(f"{kind}_type", "Input should be a valid {kind}", {"kind": kind})
        return v

    return BeforeValidator(check)


# ISO 8601 text is how JSON writes a time: read from a string even in a strict request body.
Instant = Annotated[
    datetime, PydanticStrict(False), _written_as("datetime"), AfterValidator(_instant_in_range)
]
Day = Annotated[date, PydanticStrict(False), _written_as("date"), AfterValidator(_day_in_range)]


def _clipped(v: Any) -> Any:
    return clip_depth(v, STORED_JSON_DEPTH)


# Stored JSON on the way out: never deeper than the serializer can write (one bad row must not
# break a list everyone reads).
StoredJson = Annotated[dict[str, Any], AfterValidator(_clipped)]
StoredJsonList = Annotated[list[dict[str, Any]], AfterValidator(_clipped)]


class Model(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def _takes(annotation: Any, kind: type) -> bool:
    """Whether a value of ``kind`` is one of this field's type (``kind`` itself, or Any, inside)."""
    if annotation is kind or annotation is Any:
        return True
    return any(_takes(arg, kind) for arg in get_args(annotation))


class Strict(BaseModel):
    """Request bodies: unknown fields are an error (a misspelt field must not be ignored), no
    string is longer than :data:`MAX_TEXT` unless its field says less, and a value is of the JSON
    type the schema writes (pydantic's strict mode): ``"60"`` is not a number nor ``"true"`` a
    boolean, ``true``/``false`` is not a number (pydantic would read ``"expected_revision": false``
    as 0) and ``60.5`` is not an integer (``60.0`` is: JSON has one number type). Times and dates
    are strings in JSON: :data:`Instant` and :data:`Day` read them."""

    model_config = ConfigDict(extra="forbid", str_max_length=MAX_TEXT, strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, v: Any, info: ValidationInfo) -> Any:
        annotation = cls.model_fields[info.field_name].annotation if info.field_name else None
        if isinstance(v, bool) and info.field_name and not _takes(annotation, bool):
            raise PydanticCustomError("int_type", "Input should be a valid integer")
        if (
            isinstance(v, float)
            and v.is_integer()
            and _takes(annotation, int)
            and not _takes(annotation, float)
        ):
            return int(v)  # JSON has one number type: 60.0 is the integer 60 (as JSON Schema reads it)
        return v


T = TypeVar("T")


def _present(v: T | None) -> T:
    if v is None:
        raise PydanticCustomError(
            "null_not_allowed", "may be left out, but not null: this field always has a value"
        )
    return v


def _not_nullable(schema: dict[str, Any]) -> None:
    """The field's schema without its null branch and its null default."""
    schema.pop("default", None)
    branches = [b for b in schema.get("anyOf", ()) if b != {"type": "null"}]
    if "anyOf" in schema and len(branches) == 1:
        del schema["anyOf"]
        schema.update(branches[0])


# A PATCH field whose record always holds a value: leaving it out keeps it, null is refused (422,
# named by field) and the schema does not offer null, so a client generated from it never sends one.
Settable = Annotated[T | None, AfterValidator(_present), Field(json_schema_extra=_not_nullable)]


class ErrorOut(Model):
    detail: str = Field(description="What went wrong and what to change, in the caller's language")


class ValidationErrorOut(ErrorOut):
    errors: list[dict[str, Any]] = Field(default_factory=list, description="One entry per invalid field")


# Auth --------------------------------------------------------------------------------------------------


class TokenOut(Model):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires")


class RefreshIn(Strict):
    refresh_token: str = Field(min_length=10, max_length=1024)


class UserOut(Model):
    id: int
    username: str
    display_name: str
    role: Role
    provider_id: str | None = None
    locale: Locale
    phone: str | None = None
    email: str | None = None
    active: bool = True


class LocaleIn(Strict):
    locale: Locale


class PasswordIn(Strict):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(min_length=10, max_length=1024, description="10 to 1024 characters")


class UserIn(Strict):
    username: str = Field(pattern=worded(r"^[A-Za-z0-9_.@-]{3,64}$", "error.validation.pattern.username"))
    display_name: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_visible)]
    password: str = Field(min_length=10, max_length=1024)
    role: Role
    provider_id: str | None = None
    locale: Locale = i18n.DEFAULT_LOCALE
    phone: str | None = None
    email: str | None = None


class UserPatch(Strict):
    display_name: Settable[Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_visible)]] = (
        None
    )
    role: Settable[Role] = None
    provider_id: str | None = None
    locale: Settable[Locale] = None
    phone: str | None = None
    email: str | None = None
    active: Settable[StrictBool] = None
    password: Settable[Annotated[str, Field(min_length=10, max_length=1024)]] = None


Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME), AfterValidator(_visible)]


# Providers, sites, residents --------------------------------------------------------------------


class ProviderIn(Strict):
    id: Ident = IDENT
    name: Name
    kind: Literal["home_care", "station", "institution"]
    district: str | None = None
    phone: str | None = None
    webhook_url: str | None = Field(
        default=None, pattern=worded(r"^https?://", "error.validation.pattern.http_url")
    )
    webhook_secret: str | None = Field(default=None, min_length=16)


class ProviderOut(Model):
    id: str
    name: str
    kind: str
    district: str | None = None
    phone: str | None = None
    webhook_url: str | None = None
    webhook_secret_set: bool = Field(default=False, description="Whether a webhook secret is stored")
    created_at: datetime


SiteKind = Literal["home", "station", "institution"]


class SiteIn(Strict):
    id: Ident = IDENT
    kind: SiteKind
    name: Name
    district: str | None = None
    address: str | None = None
    provider_id: str | None = None
    timezone: str = "Asia/Shanghai"
    layout: dict[str, Any] = Field(default_factory=dict)
    simulated: StrictBool = False

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        # the known names, not ZoneInfo(v): that opens a file named by the caller, and a folder
        # ("Asia") or a name too long for the file system raised OSError, a 500
        if v not in _time_zones():
            raise PydanticCustomError(
                "unknown_timezone",
                "unknown time zone {timezone}; use an IANA name such as Asia/Shanghai",
                {"timezone": repr(v[:64])},
            )
        return v


@functools.cache
def _time_zones() -> frozenset[str]:
    from zoneinfo import available_timezones

    return frozenset(available_timezones())


class SitePatch(Strict):
    name: Settable[Name] = None
    district: str | None = None
    address: str | None = None
    provider_id: str | None = None
    layout: Settable[dict[str, Any]] = None


class SiteOut(Model):
    id: str
    kind: str
    name: str
    district: str | None = None
    address: str | None = None
    provider_id: str | None = None
    timezone: str
    layout: StoredJson
    simulated: bool
    created_at: datetime


CareLevel = Literal["independent", "partly_dependent", "dependent", "dementia"]


class ResidentIn(Strict):
    id: Ident = IDENT
    name: Name
    home_site_id: str
    station_site_id: str | None = None
    home_care_provider_id: str | None = None
    institution_provider_id: str | None = None
    care_level: CareLevel = "independent"
    birth_year: int | None = Field(default=None, ge=1900, le=2100)
    sex: Literal["f", "m", "x"] | None = None
    phone: str | None = None
    emergency_contacts: list[dict[str, Any]] = Field(default_factory=list)
    escalation_policy_id: DbId | None = None
    notes: str | None = None
    simulated: StrictBool = False


class ResidentPatch(Strict):
    name: Settable[Name] = None
    station_site_id: str | None = None
    home_care_provider_id: str | None = None
    institution_provider_id: str | None = None
    care_level: Settable[CareLevel] = None
    phone: str | None = None
    emergency_contacts: Settable[list[dict[str, Any]]] = None
    escalation_policy_id: DbId | None = None
    notes: str | None = None


class ResidentOut(Model):
    """A resident's record; family members get the profile without notes and contacts of others."""

    id: str
    name: str
    home_site_id: str
    station_site_id: str | None = None
    home_care_provider_id: str | None = None
    home_care_provider_name: str | None = Field(default=None, description="Set on a single resident's record")
    home_care_provider_phone: str | None = Field(
        default=None, description="Set on a single resident's record"
    )
    institution_provider_id: str | None = None
    institution_provider_name: str | None = Field(
        default=None, description="Set on a single resident's record"
    )
    care_level: str
    birth_year: int | None = None
    sex: str | None = None
    phone: str | None = None
    emergency_contacts: StoredJsonList = Field(default_factory=list)
    escalation_policy_id: int | None = None
    notes: str | None = None
    simulated: bool


Consent = dict[Literal["activity", "bed", "bathroom", "vitals"], StrictBool]  # 1 is no consent


class FamilyLinkIn(Strict):
    user_id: DbId
    relation: Annotated[str, Field(min_length=1, max_length=50), AfterValidator(_visible)]
    is_primary: StrictBool = False
    consent: Consent = Field(default_factory=dict, description="Raw streams this viewer may see")


class ConsentIn(Strict):
    consent: Consent


class FamilyLinkOut(Model):
    user_id: int
    username: str
    display_name: str
    resident_id: str
    relation: str
    is_primary: bool
    consent: dict[str, bool]


class CareAssignmentIn(Strict):
    user_id: DbId
    role: str = Field(default="home_care_worker", max_length=50)


class CareAssignmentOut(Model):
    user_id: int
    username: str
    display_name: str
    provider_id: str | None = None
    role: str


# Gateways and sensors ------------------------------------------------------------------------------

SensorKind = Literal["wearable", "pir", "door", "bed", "plug", "sos", "env", "vitals"]


# What a registered sensor says goes into its gateway's config (protocol.SensorConfig): a sensor
# the config cannot carry made every later PUT /gateways/{id}/config a 422 about "sensors[0]".
SensorRoom = Annotated[str, Field(max_length=64)]
SensorResident = Annotated[str, StringConstraints(pattern=IDENT_PATTERN)]
MAX_SAMPLE_HZ = 200


def _sample_hz(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    """``meta.sample_hz`` (the wearable's sampling rate, sent in the config) as the protocol takes it."""
    hz = (meta or {}).get("sample_hz")
    if hz and (isinstance(hz, bool) or not isinstance(hz, int | float) or not 0 < hz <= MAX_SAMPLE_HZ):
        raise PydanticCustomError(
            "sample_hz", "sample_hz must be a number above 0 and at most {high}", {"high": MAX_SAMPLE_HZ}
        )
    return meta


class SensorIn(Strict):
    id: Ident = IDENT
    kind: SensorKind
    room: SensorRoom | None = None
    resident_id: SensorResident | None = None
    meta: Annotated[dict[str, Any], AfterValidator(_sample_hz)] = Field(default_factory=dict)


class SensorPatch(Strict):
    room: SensorRoom | None = None
    resident_id: SensorResident | None = None
    meta: Settable[Annotated[dict[str, Any], AfterValidator(_sample_hz)]] = None


class SensorOut(Model):
    gateway_id: str
    id: str
    kind: str
    room: str | None = None
    resident_id: str | None = None
    meta: StoredJson


class UnknownSensorOut(Model):
    """A sensor id a gateway sent that is not registered: its data is stored; register or remove it."""

    gateway_id: str
    site_id: str
    sensor_id: str
    first_seen: datetime
    last_seen: datetime


class GatewayIn(Strict):
    id: Ident = IDENT
    site_id: str
    description: str | None = None
    sensors: list[SensorIn] = Field(default_factory=list)


class GatewayOut(Model):
    id: str
    site_id: str
    mqtt_username: str
    description: str | None = None
    config_revision: int
    state: str
    state_at: datetime | None = None
    version: str | None = None
    config_applied: int | None = Field(
        default=None,
        description="Config revision the gateway reports in force (behind config_revision: pending)",
    )
    config_error: str | None = Field(default=None, description="Why the gateway refused its last config push")
    created_at: datetime


class SensorHealthOut(Model):
    id: str
    kind: str
    room: str | None = None
    battery: float | None = Field(default=None, description="0..1, from the gateway's latest status")
    online: bool | None = None
    last_seen: datetime | None = None


class GatewayHealthOut(Model):
    id: str
    state: str
    state_at: datetime | None = None
    version: str | None = None
    clock_skew_ms: int | None = Field(
        default=None, description="Gateway clock minus the platform's, at its last status"
    )
    clock_checked_at: datetime | None = None
    problems: list[health.Problem]
    sensors: list[SensorHealthOut]


class HomeHealthOut(Model):
    """A site's devices, what is wrong with them; the list comes with the homes needing attention first."""

    site_id: str
    site_name: str
    site_kind: str
    residents: list[str]
    problems: list[health.Problem]
    gateways: list[GatewayHealthOut]


class GatewayCredentials(Model):
    mqtt_username: str
    mqtt_password: str = Field(description="Shown once; only hashes of it are stored")
    topic_prefix: str = Field(description="The only topic prefix this gateway may publish under")
    broker_updated: bool | None = Field(
        default=None,
        description="Whether the broker's password and ACL files were rewritten and a reload requested "
        "(null: this platform does not manage the broker's files)",
    )


class GatewayProvisioned(Model):
    gateway: GatewayOut
    credentials: GatewayCredentials
    config: StoredJson


class GatewayConfigIn(Strict):
    config: dict[str, Any] = Field(
        description="The gateway's settings as in wire protocol v1 (GatewayConfig) without 'v' and 'revision'"
    )
    expected_revision: Count | None = Field(
        default=None, description="Refuse (409) if the stored revision differs: no lost updates"
    )


class GatewayConfigOut(Model):
    gateway_id: str
    revision: int
    config: StoredJson
    published: bool | None = Field(default=None, description="Whether the retained config reached the broker")


# Escalation policies and on-call ---------------------------------------------------------------------


class TierIn(Strict):
    tier: int = Field(ge=1, le=20)
    name: Name
    targets: list[str] = Field(
        min_length=1, max_length=50, description="family, assigned_worker, ..., provider:<id>"
    )
    ack_timeout_s: int = Field(gt=0, le=86_400)

    @field_validator("targets")
    @classmethod
    def _targets(cls, v: list[str]) -> list[str]:
        import re

        bad = [t for t in v if not re.match(TIER_TARGET, t)]
        if bad:
            raise PydanticCustomError(
                "unknown_target",
                "unknown target {target}; use family, assigned_worker, station_on_duty,"
                " institution_on_duty or provider:<id>",
                {"target": repr(bad[0])},
            )
        return v


class PolicyIn(Strict):
    name: Name
    tiers: list[TierIn] = Field(min_length=1, max_length=20)
    family_ack_stops: StrictBool = Field(
        default=False,
        description="A family member's acknowledgement stops escalation (default: only a care worker's)",
    )


class PolicyOut(Model):
    id: int
    name: str
    tiers: list[dict[str, Any]]
    family_ack_stops: bool = False
    created_at: datetime


class ShiftIn(Strict):
    user_id: DbId
    starts_at: Instant
    ends_at: Instant


class ShiftOut(Model):
    id: int
    provider_id: str
    user_id: int
    display_name: str
    starts_at: datetime
    ends_at: datetime


# Timelines, summaries, reports ------------------------------------------------------------------------


class TimelineCell(Model):
    bucket: datetime
    room: str | None
    sensor_kind: str
    metric: str
    n: int
    total: float
    max_value: float


class TimelineOut(Model):
    resident_id: str
    start: datetime
    end: datetime
    hidden_streams: list[str] = Field(description="Streams left out because consent does not cover them")
    cells: list[TimelineCell]


class SleepOut(Model):
    in_bed_at: datetime | None = None
    out_of_bed_at: datetime | None = None
    hours_in_bed: float | None = None
    bed_exits: int = 0


class SummaryOut(Model):
    resident_id: str
    name: str
    day: date
    timezone: str
    last_activity_at: datetime | None = None
    last_activity_room: str | None = None
    presence: Literal["home", "out", "unknown"]
    presence_since: datetime | None = None
    sleep_last_night: SleepOut | None = None
    active_hours_today: int = 0
    open_alerts: list[dict[str, Any]]
    hidden_fields: list[str] = Field(
        default_factory=list, description="Fields left empty because consent does not cover their stream"
    )
    shared_streams: list[str] = Field(
        default_factory=list,
        description="Raw streams the caller may read ('activity': the timeline); pages ask for no other",
    )


class DurationStats(Model):
    count: int
    median_s: float | None = None
    p90_s: float | None = None
    mean_s: float | None = None


class CareQualityOut(Model):
    since: datetime
    until: datetime
    alerts: int
    ack_by_tier: dict[str, DurationStats]
    resolve_by_tier: dict[str, DurationStats]
    ack_by_provider: dict[str, DurationStats]
    resolve_by_provider: dict[str, DurationStats]
    false_alarm_by_kind: dict[str, dict[str, float]]
    false_alarm_by_resident: dict[str, dict[str, float]]


class AuditOut(Model):
    id: int
    at: datetime
    user_id: int | None = None
    username: str | None = None
    action: str
    resident_id: str | None = None
    route: str | None = None
    detail: StoredJson


# Tester endpoints ----------------------------------------------------------------------------------------


class SimIncidentIn(Strict):
    resident: str
    kind: Literal[
        "fall",
        "collapse",
        "no_wake",
        "night_wandering",
        "bathroom_too_long",
        "sos",
        "device_offline",
        "low_battery",
        "gateway_outage",
    ]
    duration_s: float | None = Field(default=None, ge=0, le=7 * 86_400)
    room: str | None = None
    sensor: str | None = None
    wait_for_ack: StrictBool = Field(
        default=True, description="Wait for the simulation to confirm the trigger"
    )


class SimIncidentOut(Model):
    id: int
    resident_id: str
    kind: str
    requested_at: datetime
    acknowledged: bool
    truth: dict[str, Any] | None = None


class SimScoreOut(Model):
    incidents: int
    report: dict[str, Any]


# On duty -----------------------------------------------------------------------------------------------


class OnDutyOut(BaseModel):
    """A person who would answer for this resident right now, and how to reach them."""

    display_name: str
    phone: str | None
    provider_id: str | None
    role: str  # assigned_worker, home_care_on_duty, station_on_duty or institution_on_duty


# Alerts ------------------------------------------------------------------------------------------------


AlertState = Literal["open", "acknowledged", "resolved"]


AlertKind = Literal[
    "fall", "sos", "inactivity", "night_wandering", "bed_exit_no_return", "device_offline",
    "low_battery", "vitals", "pipeline_stalled", "clock_skew", "work_failed",
    "wearable_not_worn",
]  # fmt: skip


Outcome = Literal["confirmed", "false_alarm", "no_action_needed"]


class AlertOut(BaseModel):
    id: int
    kind: str
    severity: str
    state: str
    resident_id: str | None
    resident_name: str | None = None
    site_id: str | None
    gateway_id: str | None
    sensor_id: str | None
    title: str
    summary: StoredJson
    detected_at: datetime
    opened_at: datetime
    last_detected_at: datetime
    detections: int
    tier: int
    next_escalation_at: datetime | None
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    outcome: str | None
    simulated: bool
    cursor: str = Field(default="", description="Its place in the list: pass as `before` for the next page")


class TrailOut(BaseModel):
    at: datetime
    action: str
    tier: int | None
    actor: str | None
    detail: StoredJson
    note: str | None


class NotificationOut(BaseModel):
    tier: int
    channel: str
    target: str
    status: str
    attempts: int
    created_at: datetime
    delivered_at: datetime | None
    username: str | None
    display_name: str | None


class AlertDetail(AlertOut):
    evidence: StoredJson
    trail: list[TrailOut]
    notifications: list[NotificationOut]


class ResolveIn(Strict):
    outcome: Outcome
    note: str | None = Field(default=None, max_length=2000)


class NoteIn(Strict):
    note: Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_visible)]


class AckIn(Strict):
    """Optional: a family member says whether they are on their way (and may leave a note)."""

    on_my_way: StrictBool = False
    note: str | None = Field(default=None, max_length=2000)


# The alert engine's set-aside work ---------------------------------------------------------------------


class FailedWorkOut(BaseModel):
    id: int
    created_at: datetime
    kind: str
    gateway_id: str
    site_id: str
    payload: dict[str, Any]
    attempts: int
    last_error: str | None
    failed_at: datetime
