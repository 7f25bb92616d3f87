"""Partial batch responses with Powertools' BatchProcessor, shared by the SQS-fed handlers.

The handlers decide a whole batch at once (one write per agent-hour, calls shared across companies),
then let BatchProcessor turn each record's outcome, or the error that must send it back to SQS, into
the partial batch failure response Lambda expects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.batch import BatchProcessor
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

Outcome = TypeVar("Outcome")


def respond(
    processor: BatchProcessor,
    records: Sequence[dict[str, Any]],
    outcomes: Mapping[str, Outcome | Exception],
    on_success: Callable[[Outcome, str], None] | None = None,
) -> tuple[dict[str, Any], list[Outcome]]:
    """The response (failed message ids) and the successful outcomes, in record order."""

    def settle(record: SQSRecord) -> Outcome:
        outcome = outcomes[record.message_id]
        if isinstance(outcome, Exception):
            raise outcome
        if on_success is not None:
            on_success(outcome, record.message_id)
        return outcome

    succeeded: list[Outcome] = []
    with processor(records=list(records), handler=settle):
        for status, value, _ in processor.process():
            if status == "success":
                succeeded.append(value)
    return dict(processor.response()), succeeded
