"""Subscription lifecycle use case: a Marketplace notification -> the subscription's state, entitlements
and, when it ends, the final metering request.

Every notification is first kept in the audit log (a redelivery is recognised there). Then:
- its subscription is known (the buyer signed up): the change is applied by compare-and-set;
- it is not known yet: the change is kept beside the subscription key and applied when the buyer
  completes sign-up (``apply_pending``). The keeper re-checks the owner after keeping, and sign-up reads
  the kept changes after creating the subscription, so one of the two always applies it (both may: it is
  idempotent). Until then the subscription is *parked*; ``parked_too_long`` lists the ones parked for
  more than ``PARKED_TOO_LONG`` (a buyer who never finished sign-up, or an identity nobody matches), which
  the handler counts hourly and an alarm watches: a parked activation is a subscription never billed.

Keys: a licence is found by its licence id whatever the spelling of its ARN; a legacy notification
(CustomerIdentifier + product code) also finds a licence subscription that holds that identifier as an
alias key, so ``subscription_of`` answers the company and the subscription key the event stands for.

Ending: the subscription is saved with ``ended`` first, then ``FinalMetering.subscription_ended`` is
called. It is called on every delivery of an end (and when a late activation completes an already known
end), so a failed send is retried with the message and the engine de-duplicates repeats.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from connect_metering.domain.lifecycle import (
    Effect,
    LifecycleEvent,
    PendingLifecycle,
    StoredSubscription,
    activate,
    end,
    refreshed_entitlements,
    with_entitlements,
)
from connect_metering.domain.tenancy import Entitlements, Subscription


class FinalMetering(Protocol):
    def subscription_ended(self, company_alias: str, subscription_key: str, ended_at: datetime) -> None: ...


class EntitlementSource(Protocol):
    def entitlements_for(
        self, *, product_code: str, license_arn: str | None = None, customer_identifier: str | None = None
    ) -> Entitlements | None: ...


# A notification kept for longer than this with no company to apply it to is reported (and alarmed).
# Sign-up takes minutes; an hour leaves room for a buyer who pauses without hiding a lost activation.
PARKED_TOO_LONG = timedelta(hours=1)


class SubscriptionRecords(Protocol):
    """The subscriptions notifications change (the tenancy store)."""

    def subscription_of(self, key: str) -> tuple[str, str] | None: ...

    def read_subscription(self, alias: str, key: str) -> StoredSubscription | None: ...

    def replace_subscription(self, new: Subscription, *, previous: StoredSubscription) -> bool: ...


class LifecycleStore(Protocol):
    """The notifications themselves: the audit log, and the ones kept until sign-up."""

    def log_event(self, event: LifecycleEvent, *, recorded_at: datetime) -> bool: ...

    def keep_pending(self, event: LifecycleEvent, *, parked_at: datetime) -> None: ...

    def resolve_parked(self, subscription_key: str) -> None: ...

    def parked_since(self, before: datetime) -> list[tuple[str, datetime]]: ...

    def pending_lifecycle(self, subscription_key: str) -> PendingLifecycle | None: ...


class Outcome(StrEnum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"
    KEPT_FOR_SIGNUP = "kept_for_signup"
    RECORDED = "recorded"
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True)
class LifecycleResult:
    outcome: Outcome
    effect: Effect
    name: str
    subscription_key: str | None = None
    company: str | None = None
    duplicate: bool = False
    final_metering: bool = False
    entitlements_refreshed: bool = False


class SubscriptionVanished(RuntimeError):
    """The subscription's claim names a company but its item is missing: retried, then dead-lettered."""


class ConcurrentUpdates(RuntimeError):
    """Compare-and-set lost too many times in a row; the SQS retry will try again."""


class LifecycleService:
    def __init__(
        self,
        *,
        subscriptions: SubscriptionRecords,
        store: LifecycleStore,
        entitlements: EntitlementSource,
        final_metering: FinalMetering,
        clock: Callable[[], datetime],
        default_product_code: str = "",
        max_attempts: int = 8,
    ) -> None:
        self._subscriptions = subscriptions
        self._store = store
        self._entitlements = entitlements
        self._final = final_metering
        self._clock = clock
        self._default_product_code = default_product_code
        self._max_attempts = max_attempts

    def handle(self, event: LifecycleEvent) -> LifecycleResult:
        first_delivery = self._store.log_event(event, recorded_at=self._clock())
        duplicate = not first_delivery

        def result(outcome: Outcome, **found: Any) -> LifecycleResult:
            return LifecycleResult(
                outcome=outcome, effect=event.effect, name=event.name, duplicate=duplicate, **found
            )

        if event.effect in (Effect.RECORD, Effect.IGNORE) or event.subscription_key is None:
            outcome = Outcome.RECORDED if event.effect is Effect.RECORD else Outcome.IGNORED
            return result(outcome, subscription_key=event.subscription_key)
        found = self._subscriptions.subscription_of(event.subscription_key)
        if found is None:
            self._store.keep_pending(event, parked_at=self._clock())
            # Sign-up may have completed between the first look and the keeping: look again.
            found = self._subscriptions.subscription_of(event.subscription_key)
            if found is None:
                return result(Outcome.KEPT_FOR_SIGNUP, subscription_key=event.subscription_key)
            self._store.resolve_parked(event.subscription_key)
        alias, key = found
        before, after = self._update(alias, key, self._transition(event.effect, event.at))
        final = self._maybe_final(alias, key, before, after, always=event.effect is Effect.END)
        refreshed = False
        if event.effect in (Effect.ACTIVATE, Effect.REFRESH_ENTITLEMENTS):
            refreshed = self.refresh_entitlements(alias, key, product_code=event.product_code)
        changed = before != after or refreshed
        return result(
            Outcome.APPLIED if changed else Outcome.UNCHANGED,
            subscription_key=key,
            company=alias,
            final_metering=final,
            entitlements_refreshed=refreshed,
        )

    def apply_pending(
        self,
        alias: str,
        subscription_key: str,
        *,
        entitlements_known_at: datetime,
        product_code: str | None,
        alias_keys: Sequence[str] = (),
    ) -> Subscription | None:
        """Apply what arrived before sign-up, under the subscription's key or any of its alias keys, to the
        subscription just created; None if nothing had."""
        pending: PendingLifecycle | None = None
        kept_under: list[str] = []
        for key in (subscription_key, *alias_keys):
            kept = self._store.pending_lifecycle(key)
            if kept is not None:
                pending = kept.merged_with(pending)
                kept_under.append(key)
        if pending is None:
            return None
        before, after = self._update(alias, subscription_key, pending.apply_to)
        self._maybe_final(alias, subscription_key, before, after, always=True)
        changed = pending.entitlements_changed
        if changed is not None and changed > entitlements_known_at:
            self.refresh_entitlements(alias, subscription_key, product_code=product_code)
        for key in kept_under:  # only once applied: a failure above leaves them parked, and alarmed
            self._store.resolve_parked(key)
        return after

    def refresh_entitlements(self, alias: str, key: str, *, product_code: str | None) -> bool:
        """GetEntitlements (all pages) for the subscription and store the result; False if the product
        code is unknown (a licence identity carries none and the event had none)."""
        stored = self._subscriptions.read_subscription(alias, key)
        if stored is None:
            raise SubscriptionVanished(key)
        identity = stored.subscription.identity
        product = product_code or identity.product_code or self._default_product_code
        if not product:
            return False
        fetched = self._entitlements.entitlements_for(
            product_code=product,
            license_arn=identity.license_arn,
            customer_identifier=None if identity.license_arn else identity.customer_identifier,
        )
        before, after = self._update(
            alias, key, lambda current: with_entitlements(current, refreshed_entitlements(current, fetched))
        )
        return before != after

    def parked_too_long(self) -> list[tuple[str, datetime]]:
        """(subscription key, parked at) of the subscriptions parked for more than ``PARKED_TOO_LONG``."""
        return self._store.parked_since(self._clock() - PARKED_TOO_LONG)

    # Internals -----------------------------------------------------------------------------------

    @staticmethod
    def _transition(effect: Effect, at: datetime) -> Callable[[Subscription], Subscription]:
        if effect is Effect.ACTIVATE:
            return lambda subscription: activate(subscription, at)
        if effect is Effect.END:
            return lambda subscription: end(subscription, at)
        return lambda subscription: subscription

    def _update(
        self, alias: str, key: str, change: Callable[[Subscription], Subscription]
    ) -> tuple[Subscription, Subscription]:
        for _ in range(self._max_attempts):
            stored = self._subscriptions.read_subscription(alias, key)
            if stored is None:
                raise SubscriptionVanished(key)
            updated = change(stored.subscription)
            if updated == stored.subscription or self._subscriptions.replace_subscription(
                updated, previous=stored
            ):
                return stored.subscription, updated
        raise ConcurrentUpdates(f"{key}: {self._max_attempts} concurrent updates in a row")

    def _maybe_final(
        self, alias: str, key: str, before: Subscription, after: Subscription, *, always: bool
    ) -> bool:
        if after.started is None or after.ended is None:
            return False
        if not always and before.started == after.started and before.ended == after.ended:
            return False
        self._final.subscription_ended(alias, key, after.ended)
        return True
