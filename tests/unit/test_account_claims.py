"""Account claims: unverified until the account proves them, never blocking the account's real owner,
expiring after a week; verified claims keep one account, one company (BILLING.md section 1)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from connect_metering.domain.agent_events import Envelope, parse_envelope
from connect_metering.domain.instants import from_ms
from connect_metering.domain.tenancy import (
    UNVERIFIED_CLAIM_LIFETIME,
    VERIFICATION_RESOURCE_PREFIX,
    AccountClaim,
    ClaimDecision,
    Environment,
    EnvironmentVerification,
    TenancyError,
    build,
    carries_code,
    decide_claim,
    new_verification_code,
    verification_resource,
)
from connect_metering.services.verification import ClaimVerification
from infra.constructs.forwarder import VERIFICATION_RESOURCE_PREFIX as FORWARDER_PREFIX

NOW = datetime(2026, 11, 2, 9, tzinfo=UTC)
INSTANCE = "arn:aws:connect:us-east-1:111122223333:instance/aaaaaaaa-0000-4000-8000-000000000001"
UNVERIFIED = AccountClaim(company="globex", unverified_until=NOW + timedelta(days=1))
EXPIRED = AccountClaim(company="globex", unverified_until=NOW - timedelta(seconds=1))
VERIFIED = AccountClaim(company="globex")


@pytest.mark.parametrize(
    ("existing", "alias", "proven", "decision"),
    [
        (None, "acme", False, ClaimDecision.NEW),
        (None, "acme", True, ClaimDecision.NEW),
        (VERIFIED, "acme", False, ClaimDecision.REFUSED),
        (VERIFIED, "acme", True, ClaimDecision.REFUSED),  # a verified claim keeps today's rule
        (UNVERIFIED, "acme", False, ClaimDecision.REFUSED),  # blocks others for a week
        (UNVERIFIED, "acme", True, ClaimDecision.TAKE_OVER),  # never the account's proven owner
        (EXPIRED, "acme", False, ClaimDecision.TAKE_OVER),  # an expired claim blocks nobody
        (VERIFIED, "globex", False, ClaimDecision.KEEP),
        (UNVERIFIED, "globex", False, ClaimDecision.KEEP),
        (UNVERIFIED, "globex", True, ClaimDecision.VERIFY),
        (EXPIRED, "globex", False, ClaimDecision.RENEW),
    ],
)
def test_claim_decisions(
    existing: AccountClaim | None, alias: str, proven: bool, decision: ClaimDecision
) -> None:
    assert decide_claim(existing, alias, now=NOW, proven=proven) is decision


def test_an_unverified_claim_blocks_until_exactly_its_expiry() -> None:
    claim = AccountClaim(company="globex", unverified_until=NOW + UNVERIFIED_CLAIM_LIFETIME)
    just_before = NOW + UNVERIFIED_CLAIM_LIFETIME - timedelta(milliseconds=1)
    assert claim.blocks("acme", now=just_before, proven=False)
    assert not claim.blocks("acme", now=NOW + UNVERIFIED_CLAIM_LIFETIME, proven=False)
    assert not claim.blocks("globex", now=NOW, proven=False)
    assert timedelta(days=7) == UNVERIFIED_CLAIM_LIFETIME


def test_verification_codes_are_random_url_safe_128_bits() -> None:
    codes = {new_verification_code() for _ in range(200)}
    assert len(codes) == 200
    for code in codes:
        assert len(code) == 22 and code.replace("-", "").replace("_", "").isalnum()
        EnvironmentVerification(code=code, claimed_at=NOW)  # the model accepts what it generates
    with pytest.raises(TenancyError):
        build(EnvironmentVerification, code="short", claimed_at=NOW)


def test_only_the_exact_resource_carries_the_code() -> None:
    code = new_verification_code()
    assert carries_code([verification_resource(code)], code)
    assert carries_code(["arn:aws:something:::else", verification_resource(code)], code)
    assert not carries_code([], code)
    assert not carries_code([code], code)  # the bare code is not the forwarder's resource
    assert not carries_code([verification_resource(code) + "x"], code)
    assert not carries_code([verification_resource(new_verification_code())], code)
    # Only the first ten are read (Pipes sends at most ten resources).
    assert not carries_code(["arn:aws:x:::y"] * 10 + [verification_resource(code)], code)


def test_the_forwarder_and_the_ingest_agree_on_the_resource_form() -> None:
    assert FORWARDER_PREFIX == VERIFICATION_RESOURCE_PREFIX


def test_the_envelope_keeps_its_string_resources_only() -> None:
    body = {
        "source": "connect-metering.forwarder",
        "detail-type": "Amazon Connect Agent Event",
        "account": "111122223333",
        "time": "2026-11-02T09:00:00Z",
        "resources": ["arn:aws:a:::b", 7, None, "x" * 1601, "arn:aws:c:::d"],
        "detail": {},
    }
    assert parse_envelope(json.dumps(body)).resources == ("arn:aws:a:::b", "arn:aws:c:::d")
    body["resources"] = "arn:aws:a:::b"
    assert parse_envelope(json.dumps(body)).resources == ()


class RecordingStore:
    def __init__(self, answer: bool = True) -> None:
        self.calls: list[Environment] = []
        self.answer = answer

    def verify_account(self, environment: Environment) -> bool:
        self.calls.append(environment)
        return self.answer


def _environment(code: str, verified_at: datetime | None = None) -> Environment:
    return build(
        Environment,
        company_alias="acme",
        name="prod",
        instance_arn=INSTANCE,
        verification=EnvironmentVerification(code=code, claimed_at=NOW, verified_at=verified_at),
    )


def _envelope(resources: list[str], arrived_ms: int = 1_793_000_000_000) -> Envelope:
    body = {
        "source": "connect-metering.forwarder",
        "detail-type": "Amazon Connect Agent Event",
        "account": "111122223333",
        "time": from_ms(arrived_ms).isoformat(),
        "resources": resources,
        "detail": {},
    }
    return parse_envelope(json.dumps(body))


def test_the_hook_verifies_once_from_the_right_code_and_then_costs_no_request() -> None:
    code = new_verification_code()
    store = RecordingStore()
    hook = ClaimVerification(store)
    environment = _environment(code)
    assert not hook.after_accepted(environment, _envelope([]))
    wrong = verification_resource(new_verification_code())
    assert not hook.after_accepted(environment, _envelope([wrong]))
    assert store.calls == []
    assert hook.after_accepted(environment, _envelope([verification_resource(code)], 1_793_000_000_000))
    [verified] = store.calls
    assert verified.verification is not None
    assert verified.verification.verified_at == from_ms(1_793_000_000_000)  # the arrival, not a clock
    # The environment cache may still hold the unverified copy: no second write for it.
    for _ in range(5):
        hook.after_accepted(environment, _envelope([verification_resource(code)]))
    assert len(store.calls) == 1


def test_the_hook_never_writes_for_verified_or_trusted_environments() -> None:
    code = new_verification_code()
    store = RecordingStore()
    hook = ClaimVerification(store)
    hook.after_accepted(_environment(code, verified_at=NOW), _envelope([verification_resource(code)]))
    trusted = build(Environment, company_alias="acme", name="prod", instance_arn=INSTANCE)
    hook.after_accepted(trusted, _envelope([verification_resource(code)]))
    assert store.calls == []


def test_the_hook_verifies_an_instance_registered_again_with_a_new_code() -> None:
    store = RecordingStore(answer=False)  # the first owner's claim was taken meanwhile
    hook = ClaimVerification(store)
    first, second = new_verification_code(), new_verification_code()
    hook.after_accepted(_environment(first), _envelope([verification_resource(first)]))
    store.answer = True
    assert hook.after_accepted(_environment(second), _envelope([verification_resource(second)]))
    assert [call.verification.code for call in store.calls if call.verification] == [first, second]
