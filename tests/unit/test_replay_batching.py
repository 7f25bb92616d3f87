"""`replay` hands the ingest handler the batches the deployed event source mapping would
(``traffic.DeployedBatches``, the rules of ``connect_metering/ingest_batching.py``): a batch closes at the batch size, before the record that
would take the Lambda payload past its limit, and before the first record delivered after its window."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connect_metering import ingest_batching
from connect_metering.local.traffic import DeployedBatches, json_string_length, sqs_batch

pytestmark = pytest.mark.unit

WINDOW_MS = ingest_batching.BATCHING_WINDOW_SECONDS * 1000


def test_a_batch_gathers_for_its_window_and_closes_before_a_later_record() -> None:
    gathering: DeployedBatches[tuple[str, None]] = DeployedBatches()
    assert gathering.add(("a", None), "a", 1_000) == []
    assert gathering.add(("b", None), "b", 1_000 + WINDOW_MS) == []  # still inside the window
    assert gathering.add(("c", None), "c", 1_001 + WINDOW_MS) == [[("a", None), ("b", None)]]
    assert gathering.take() == [("c", None)]
    assert gathering.take() == []


def test_a_batch_closes_at_the_batch_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_batching, "BATCH_SIZE", 3)
    gathering: DeployedBatches[tuple[str, None]] = DeployedBatches()
    closed = [batch for n in range(7) for batch in gathering.add((str(n), None), str(n), 0)]
    assert closed == [[("0", None), ("1", None), ("2", None)], [("3", None), ("4", None), ("5", None)]]
    assert gathering.take() == [("6", None)]


def test_no_batch_goes_past_the_lambda_payload_limit() -> None:
    body = json.dumps({"detail": {"text": 'quoted "words" and a \\ backslash ' * 4_000}})
    gathering: DeployedBatches[tuple[str, None]] = DeployedBatches()
    batches = [batch for _ in range(100) for batch in gathering.add((body, None), body, 0)]
    batches.append(gathering.take())
    assert sum(len(batch) for batch in batches) == 100 and len(batches) > 1
    for batch in batches:
        payload = len(json.dumps(sqs_batch([item[0] for item in batch])))
        assert payload <= ingest_batching.LAMBDA_PAYLOAD_LIMIT_BYTES
        assert payload > ingest_batching.LAMBDA_PAYLOAD_LIMIT_BYTES * 0.9 or batch is batches[-1]


@given(
    st.text()
    | st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127))
    | st.text(alphabet=st.sampled_from('ab "\\/\x7f\x1f\n\t\u00e9\U0001f600'))
)
def test_a_record_body_is_sized_as_json_dumps_escapes_it(text: str) -> None:
    assert json_string_length(text) == len(json.dumps(text))


def test_a_published_event_body_is_sized_as_json_dumps_escapes_it() -> None:
    body = json.dumps(
        {"detail": {"AgentARN": "arn:aws:connect:us-east-1:1:instance/i/agent/a", "q": 'say "hi" \\'}}
    )
    assert json_string_length(body) == len(json.dumps(body))
