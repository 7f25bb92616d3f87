"""Account claim verification: an environment's claim on its AWS account is proven by the account itself.

Ingest calls ``ClaimVerification.after_accepted`` for every event it accepted. The envelope's
``account`` is set by EventBridge and already equals the instance's account (BILLING.md section 2 rule
4), so an event that carries the environment's verification code in ``resources`` shows the account
runs the forwarder the company configured: the claim is verified, and the environment is metered from
then on. Once an environment is known verified, or the event carries no matching code, nothing is read
or written: the per-event cost is a comparison in memory.
"""

from __future__ import annotations

from typing import Protocol

from connect_metering.domain.agent_events import Envelope
from connect_metering.domain.instants import from_ms
from connect_metering.domain.tenancy import Environment, carries_code


class ClaimVerifier(Protocol):
    def verify_account(self, environment: Environment) -> bool: ...


class ClaimVerification:
    """Per container: remembers the environments it verified (or found their claim taken meanwhile), by
    instance and code, so the environment cache's stale "unverified" copies never cost another write,
    while an instance registered again (a new code) is still verified."""

    def __init__(self, store: ClaimVerifier) -> None:
        self._store = store
        self._settled: set[tuple[str, str]] = set()

    def awaits_proof(self, environment: Environment) -> bool:
        """False when no event of this environment can verify anything (``after_accepted`` would then
        read, write and return nothing): it has no claim to prove, or its claim is verified or settled.
        Ingest asks this once per event, instead of keeping every event for ``after_accepted``."""
        verification = environment.verification
        if verification is None or verification.verified_at is not None:
            return False
        return (environment.instance_arn.arn, verification.code) not in self._settled

    def after_accepted(self, environment: Environment, envelope: Envelope) -> bool:
        """Verify the environment's claim if this accepted event proves it; True when it did just now."""
        verification = environment.verification
        if verification is None or verification.verified_at is not None:
            return False
        settled = (environment.instance_arn.arn, verification.code)
        if settled in self._settled:
            return False
        if not carries_code(envelope.resources, verification.code):
            return False
        # The arrival time EventBridge stamped, not a clock read: when the account proved it.
        proven = verification.model_copy(update={"verified_at": from_ms(envelope.arrival_ms)})
        verified = self._store.verify_account(environment.model_copy(update={"verification": proven}))
        self._settled.add(settled)
        return verified
