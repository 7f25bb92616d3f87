"""Settings: each handler's environment, read once at cold start into its own pydantic-settings class.

The variable names are the constants below; the CDK constructs import them instead of retyping the
strings, and ``tests/infra/test_function_environment.py`` checks that every synthesized function carries
every variable its handler requires and none its handler does not read. Logic never reads os.environ.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

TENANCY_TABLE = "TENANCY_TABLE"
ACTIVITY_TABLE = "ACTIVITY_TABLE"
QUARANTINE_TABLE = "QUARANTINE_TABLE"
LEDGER_TABLE = "LEDGER_TABLE"
METER_QUEUE_URL = "METER_QUEUE_URL"
QUARANTINE_RETENTION_DAYS = "QUARANTINE_RETENTION_DAYS"
PRODUCT_CODE = "PRODUCT_CODE"
AGENT_EVENTS_BUS_ARN = "AGENT_EVENTS_BUS_ARN"
FORWARDER_TEMPLATE_URL = "FORWARDER_TEMPLATE_URL"
CONSOLE_USER_POOL_ID = "CONSOLE_USER_POOL_ID"
CONSOLE_CLIENT_ID = "CONSOLE_CLIENT_ID"
CONSOLE_SESSION_SECRET_ARN = "CONSOLE_SESSION_SECRET_ARN"  # noqa: S105 (a variable name, not a secret)

# Set while ``from_environment`` reads a given mapping: the settings sources are then that mapping alone.
_GIVEN_MAPPING_ONLY: ContextVar[bool] = ContextVar("_GIVEN_MAPPING_ONLY", default=False)


class BillingPolicy(BaseModel):
    """BILLING.md section 8: the policy values and their defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    billable_time: Literal["logged_in", "online"] = "logged_in"
    silence_timeout: int = Field(default=360, ge=0, description="seconds")
    grace: int = Field(default=600, ge=0, description="seconds")
    max_record_age: int = Field(default=21_600, ge=0, le=21_600, description="seconds")
    max_event_age: int = Field(default=604_800, ge=0, description="seconds")
    usage_dimension: str = Field(default="agent_minutes", min_length=1)
    overage_dimension: str = Field(default="overage_agents", min_length=1)
    entitlement_dimension: str = Field(default="licensed_agents", min_length=1)
    allocation_tag_key: str = Field(default="environment", min_length=1)


# The environment variable of each policy value (all optional: BillingPolicy holds the defaults).
POLICY_VARIABLES = {
    "billable_time": "BILLABLE_TIME",
    "silence_timeout": "SILENCE_TIMEOUT_SECONDS",
    "grace": "GRACE_SECONDS",
    "max_record_age": "MAX_RECORD_AGE_SECONDS",
    "max_event_age": "MAX_EVENT_AGE_SECONDS",
    "usage_dimension": "USAGE_DIMENSION",
    "overage_dimension": "OVERAGE_DIMENSION",
    "entitlement_dimension": "ENTITLEMENT_DIMENSION",
    "allocation_tag_key": "ALLOCATION_TAG_KEY",
}


class HandlerSettings(BaseSettings):
    """What every handler reads: the billing policy, each value optional. A subclass adds the handler's
    own variables, each a field whose ``validation_alias`` is its variable name; one without a default
    is required, and a blank required value counts as missing."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=True)

    billable_time: str | None = Field(default=None, validation_alias=POLICY_VARIABLES["billable_time"])
    silence_timeout: str | None = Field(default=None, validation_alias=POLICY_VARIABLES["silence_timeout"])
    grace: str | None = Field(default=None, validation_alias=POLICY_VARIABLES["grace"])
    max_record_age: str | None = Field(default=None, validation_alias=POLICY_VARIABLES["max_record_age"])
    max_event_age: str | None = Field(default=None, validation_alias=POLICY_VARIABLES["max_event_age"])
    usage_dimension: str | None = Field(default=None, validation_alias=POLICY_VARIABLES["usage_dimension"])
    overage_dimension: str | None = Field(
        default=None, validation_alias=POLICY_VARIABLES["overage_dimension"]
    )
    entitlement_dimension: str | None = Field(
        default=None, validation_alias=POLICY_VARIABLES["entitlement_dimension"]
    )
    allocation_tag_key: str | None = Field(
        default=None, validation_alias=POLICY_VARIABLES["allocation_tag_key"]
    )
    _policy: BillingPolicy = PrivateAttr(default_factory=BillingPolicy)

    def model_post_init(self, context: Any, /) -> None:
        # Validated here, with BillingPolicy's own rules, so a bad value fails the cold start by name.
        given = {name: getattr(self, name) for name in POLICY_VARIABLES if getattr(self, name) is not None}
        self._policy = BillingPolicy.model_validate(given)

    @property
    def policy(self) -> BillingPolicy:
        return self._policy

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if _GIVEN_MAPPING_ONLY.get():
            return (init_settings,)
        return (init_settings, env_settings, dotenv_settings, file_secret_settings)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Self:
        """Read from ``environ`` alone (tests, the local runtime), never os.environ: a variable set in the
        process must not fill in one the caller left out. ``load_settings`` reads os.environ."""
        token = _GIVEN_MAPPING_ONLY.set(True)
        try:
            return cls.model_validate(dict(environ))
        finally:
            _GIVEN_MAPPING_ONLY.reset(token)

    @classmethod
    def variables(cls) -> dict[str, bool]:
        """Every variable this handler reads -> whether it is required."""
        return {
            str(field.validation_alias): field.is_required()
            for field in cls.model_fields.values()
            if field.validation_alias is not None
        }


class IngestSettings(HandlerSettings):
    tenancy_table: str = Field(validation_alias=TENANCY_TABLE, min_length=1)
    activity_table: str = Field(validation_alias=ACTIVITY_TABLE, min_length=1)
    quarantine_table: str = Field(validation_alias=QUARANTINE_TABLE, min_length=1)
    quarantine_retention_days: int = Field(default=30, ge=14, validation_alias=QUARANTINE_RETENTION_DAYS)


class DispatchSettings(HandlerSettings):
    tenancy_table: str = Field(validation_alias=TENANCY_TABLE, min_length=1)
    activity_table: str = Field(validation_alias=ACTIVITY_TABLE, min_length=1)
    meter_queue_url: str = Field(validation_alias=METER_QUEUE_URL, min_length=1)


class MeterWorkerSettings(HandlerSettings):
    tenancy_table: str = Field(validation_alias=TENANCY_TABLE, min_length=1)
    activity_table: str = Field(validation_alias=ACTIVITY_TABLE, min_length=1)
    ledger_table: str = Field(validation_alias=LEDGER_TABLE, min_length=1)


class LifecycleSettings(HandlerSettings):
    tenancy_table: str = Field(validation_alias=TENANCY_TABLE, min_length=1)
    # Required: a subscription that ends must have its last hours metered within the hour AWS allows.
    meter_queue_url: str = Field(validation_alias=METER_QUEUE_URL, min_length=1)
    product_code: str = Field(default="", validation_alias=PRODUCT_CODE)


class RegistrationSettings(HandlerSettings):
    tenancy_table: str = Field(validation_alias=TENANCY_TABLE, min_length=1)
    # Required: sign-up applies kept lifecycle events, an end among them asks for final metering.
    meter_queue_url: str = Field(validation_alias=METER_QUEUE_URL, min_length=1)
    product_code: str = Field(default="", validation_alias=PRODUCT_CODE)
    # What the sign-up success page tells buyers.
    agent_events_bus_arn: str = Field(default="", validation_alias=AGENT_EVENTS_BUS_ARN)
    forwarder_template_url: str = Field(default="", validation_alias=FORWARDER_TEMPLATE_URL)
    # The console's user pool: when set, the contact email of a new company becomes its first administrator.
    console_user_pool_id: str = Field(default="", validation_alias=CONSOLE_USER_POOL_ID)


class AdminSettings(HandlerSettings):
    tenancy_table: str = Field(validation_alias=TENANCY_TABLE, min_length=1)
    activity_table: str = Field(validation_alias=ACTIVITY_TABLE, min_length=1)
    product_code: str = Field(default="", validation_alias=PRODUCT_CODE)
    agent_events_bus_arn: str = Field(default="", validation_alias=AGENT_EVENTS_BUS_ARN)


class ConsoleSettings(HandlerSettings):
    tenancy_table: str = Field(validation_alias=TENANCY_TABLE, min_length=1)
    activity_table: str = Field(validation_alias=ACTIVITY_TABLE, min_length=1)
    ledger_table: str = Field(validation_alias=LEDGER_TABLE, min_length=1)
    product_code: str = Field(default="", validation_alias=PRODUCT_CODE)
    agent_events_bus_arn: str = Field(default="", validation_alias=AGENT_EVENTS_BUS_ARN)
    forwarder_template_url: str = Field(default="", validation_alias=FORWARDER_TEMPLATE_URL)
    user_pool_id: str = Field(validation_alias=CONSOLE_USER_POOL_ID, min_length=1)
    client_id: str = Field(validation_alias=CONSOLE_CLIENT_ID, min_length=1)
    # The session cookies' HMAC key lives in Secrets Manager, read once per container; never in the environment.
    session_secret_arn: str = Field(validation_alias=CONSOLE_SESSION_SECRET_ARN, min_length=1)


AnySettings = TypeVar("AnySettings", bound=HandlerSettings)


class _LoadedOnce:
    """``load_settings(IngestSettings)``: the handler's settings, read once per Lambda container;
    ``load_settings.cache_clear()`` makes the next call read again (tests, the local runtime)."""

    def __init__(self) -> None:
        self._loaded: dict[type[HandlerSettings], HandlerSettings] = {}

    def __call__(self, kind: type[AnySettings]) -> AnySettings:
        settings = self._loaded.get(kind)
        if settings is None:
            settings = self._loaded[kind] = kind()
        assert isinstance(settings, kind)
        return settings

    def cache_clear(self) -> None:
        self._loaded.clear()


load_settings = _LoadedOnce()
