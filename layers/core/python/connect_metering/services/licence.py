"""Licence information, the seat check and environment administration (the admin API's use cases).

"Active agents now" are the distinct agents of the company's environments with a session open at now
(BILLING.md section 3), read from the activity store over the current and the previous hour: an open
session has an event within the silence timeout (6 minutes), so those two hours always hold it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from connect_metering.domain.activity import HourWindow
from connect_metering.domain.instants import MS_PER_HOUR, hour_floor, to_ms
from connect_metering.domain.licence import (
    LicenceInfo,
    SeatDecision,
    SeatReason,
    licence_info,
    seat_decision,
)
from connect_metering.domain.sessions import AgentEventPoint, SessionEnd, sessions_for_agent
from connect_metering.domain.tenancy import (
    Company,
    CompanyNotFound,
    Environment,
    EnvironmentVerification,
    InstanceArn,
    Subscription,
    TenancyError,
    build,
    check_buyer_instance,
    instance_arn_of_agent,
)


class TenancyReader(Protocol):
    def get_company(self, alias: str) -> Company | None: ...

    def list_subscriptions(self, alias: str) -> list[Subscription]: ...

    def list_environments(self, alias: str) -> list[Environment]: ...

    def environment_for_instance(self, instance_arn: str) -> Environment | None: ...

    def add_environment(self, environment: Environment) -> Environment: ...

    def remove_environment(self, alias: str, name: str) -> None: ...


class ActivityReader(Protocol):
    def read_hours(self, instance_arn: str, first_hour_ms: int, last_hour_ms: int) -> HourWindow: ...


class LicenceService:
    def __init__(
        self,
        *,
        tenancy: TenancyReader,
        activity: ActivityReader,
        clock: Callable[[], datetime],
        silence_timeout_ms: int,
        product_code: str = "",
    ) -> None:
        self._tenancy = tenancy
        self._activity = activity
        self._clock = clock
        self._timeout_ms = silence_timeout_ms
        self._product_code = product_code

    # Environments --------------------------------------------------------------------------------

    def environments(self, alias: str) -> list[Environment]:
        self._company(alias)
        return sorted(self._tenancy.list_environments(alias), key=lambda environment: environment.name)

    def add_environment(self, alias: str, name: object, instance_arn: object) -> Environment:
        """Validate and add; the store enforces uniqueness and one-account-one-company atomically. The
        account claim is unverified until the account's forwarder sends the environment's code."""
        if not isinstance(instance_arn, str):
            raise TenancyError("instance_arn", "instance_arn_format", "instance_arn must be a string")
        environment = build(
            Environment,
            company_alias=alias,
            name=name,
            instance_arn=check_buyer_instance(InstanceArn.parse(instance_arn)),
            verification=EnvironmentVerification.new(claimed_at=self._clock()),
        )
        return self._tenancy.add_environment(environment)

    def remove_environment(self, alias: str, name: str) -> None:
        self._company(alias)
        self._tenancy.remove_environment(alias, name)

    # Licence -------------------------------------------------------------------------------------

    def licence(self, alias: str) -> LicenceInfo:
        company = self._company(alias)
        now = self._clock()
        agents = self.active_agents(self._tenancy.list_environments(alias), now)
        return licence_info(
            company,
            self._tenancy.list_subscriptions(alias),
            active_agents=len(agents),
            now=now,
            product_code=self._product_code or None,
        )

    def seat_check(self, instance_arn: str, agent_arn: str) -> SeatDecision:
        """May this agent log in now? Denied only for an unknown instance or a company that is not active."""
        if instance_arn_of_agent(agent_arn) != instance_arn:
            raise TenancyError("agent_arn", "agent_of_instance", "agent_arn is not an agent of instance_arn")
        environment = self._tenancy.environment_for_instance(InstanceArn.parse(instance_arn).arn)
        if environment is None:
            return SeatDecision(
                allowed=False,
                reason=SeatReason.UNKNOWN_ENVIRONMENT,
                flagged=False,
                message="this Amazon Connect instance is not a registered environment",
            )
        alias = environment.company_alias
        now = self._clock()
        agents = self.active_agents(self._tenancy.list_environments(alias), now)
        info = licence_info(
            self._company(alias),
            self._tenancy.list_subscriptions(alias),
            active_agents=len(agents),
            now=now,
            product_code=self._product_code or None,
        )
        return seat_decision(info, agent_already_active=agent_arn in agents)

    def active_agents(self, environments: Sequence[Environment], now: datetime) -> set[str]:
        now_ms = to_ms(now)
        current_hour = hour_floor(now_ms)
        active: set[str] = set()
        for environment in environments:
            window = self._activity.read_hours(
                environment.instance_arn.arn, current_hour - MS_PER_HOUR, current_hour
            )
            points: dict[str, list[AgentEventPoint]] = defaultdict(list)
            for stored in window.events:
                if stored.point.ts_ms <= now_ms:
                    points[stored.agent_arn].append(stored.point)
            for agent_arn, agent_points in points.items():
                sessions = sessions_for_agent(agent_points, silence_timeout_ms=self._timeout_ms)
                if (
                    sessions
                    and sessions[-1].end_reason is SessionEnd.OPEN
                    and now_ms - sessions[-1].last_ms <= self._timeout_ms
                ):
                    active.add(agent_arn)
        return active

    def _company(self, alias: str) -> Company:
        company = self._tenancy.get_company(alias)
        if company is None:
            raise CompanyNotFound(alias)
        return company
