"""The shortcuts of the ingest path give what the long way gives: the event encoding, the remembered
agent/instance pairs of the short event reading, and the claim hook's "nothing to prove" answer (ingest
then skips the hook)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connect_metering.adapters.activity_table import (
    decode_event,
    encode_event,
    encode_events,
    stored_event_id,
)
from connect_metering.domain.agent_events import (
    AgentEvent,
    Envelope,
    Quarantined,
    _common_agent_event,
    _parsed_agent_event,
)
from connect_metering.domain.sessions import UNKNOWN_STATUS_START_MS, EventKind
from connect_metering.domain.tenancy import (
    Environment,
    EnvironmentVerification,
    InstanceArn,
    build,
    new_verification_code,
    verification_resource,
)
from connect_metering.services.verification import ClaimVerification
from tests.unit.test_agent_event_fast_path import INSTANCE, published_event

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 2, 9, tzinfo=UTC)


def encoded_the_long_way(event: AgentEvent) -> str:
    """``encode_event`` as it was written before its shortcut (the stored id always through the digest
    helper, the status built in two steps)."""
    status = f"{int(event.offline)}"
    if event.status_start_ms != UNKNOWN_STATUS_START_MS:
        status += f"@{event.status_start_ms}"
    return f"{event.ts_ms}|{int(event.kind)}|{status}|{stored_event_id(event.event_id)}"


@settings(max_examples=300, deadline=None)
@given(
    event_id=st.text(min_size=1, max_size=60) | st.sampled_from(["a" * 36, "a" * 37, "x|y"]),
    kind=st.sampled_from(list(EventKind)),
    ts_ms=st.integers(0, 10**13),
    offline=st.booleans(),
    start=st.none() | st.integers(0, 10**13),
)
def test_the_encoding_is_the_long_ways(
    event_id: str, kind: EventKind, ts_ms: int, offline: bool, start: int | None
) -> None:
    instance = InstanceArn.parse(INSTANCE)
    event = AgentEvent(
        event_id,
        kind,
        ts_ms,
        f"{INSTANCE}/agent/a",
        instance,
        instance.account_id,
        offline,
        UNKNOWN_STATUS_START_MS if start is None else start,
    )
    text = encode_event(event)
    assert text == encoded_the_long_way(event)
    assert encode_events([event, event._replace(ts_ms=ts_ms + 1)]) == [
        text,
        encode_event(event._replace(ts_ms=ts_ms + 1)),
    ]
    assert decode_event(text) == (ts_ms, kind, stored_event_id(event_id), offline, event.status_start_ms)


def answer(detail: dict[str, object]) -> object:
    try:
        return _parsed_agent_event(detail)
    except Quarantined as rejection:
        return rejection.reason.value


OTHER_INSTANCE = INSTANCE.replace("000000000006", "000000000007", 1).replace("0006", "0007")


@pytest.mark.parametrize(
    ("instance_text", "agent_arn"),
    [
        (OTHER_INSTANCE, f"{INSTANCE}/agent/agent-06-018"),  # a remembered agent named with another instance
        (INSTANCE, f"{OTHER_INSTANCE}/agent/agent-06-018"),
        (OTHER_INSTANCE, f"{OTHER_INSTANCE}/agent/agent-06-018"),  # a new pair, remembered in turn
        (INSTANCE + " ", f"{INSTANCE}/agent/agent-06-018"),
        (["list"], f"{INSTANCE}/agent/agent-06-018"),
        (INSTANCE, ["list"]),
    ],
)
def test_a_remembered_agent_is_only_a_shortcut_for_its_own_instance(
    instance_text: object, agent_arn: object
) -> None:
    for _ in range(2):  # the first reading remembers the published pair, the second uses it
        assert _common_agent_event(published_event()) == _parsed_agent_event(published_event())
        detail = published_event()
        detail["InstanceARN"], detail["AgentARN"] = instance_text, agent_arn
        fast = _common_agent_event(detail)
        if fast is not None:
            assert fast == answer(detail)
        else:
            assert isinstance(answer(detail), str)  # refused, with the general way's reason


class RecordingStore:
    def __init__(self) -> None:
        self.calls: list[Environment] = []

    def verify_account(self, environment: Environment) -> bool:
        self.calls.append(environment)
        return True


def _environment(code: str | None, verified: bool = False) -> Environment:
    return build(
        Environment,
        company_alias="acme",
        name="prod",
        instance_arn=INSTANCE,
        verification=(
            None
            if code is None
            else EnvironmentVerification(code=code, claimed_at=NOW, verified_at=NOW if verified else None)
        ),
    )


def test_an_environment_with_nothing_to_prove_is_skipped_and_the_hook_would_do_nothing() -> None:
    code = new_verification_code()
    carrying = Envelope("210000000006", 1_793_000_000_000, {}, (verification_resource(code),))
    store = RecordingStore()
    hook = ClaimVerification(store)
    for environment in (_environment(None), _environment(code, verified=True)):
        assert not hook.awaits_proof(environment)
        assert not hook.after_accepted(environment, carrying)
    assert store.calls == []
    pending = _environment(code)
    assert hook.awaits_proof(pending)
    assert hook.after_accepted(pending, carrying)
    # Settled in this container: nothing more to prove, and the hook indeed writes no more.
    assert not hook.awaits_proof(pending)
    assert not hook.after_accepted(pending, carrying)
    assert len(store.calls) == 1
