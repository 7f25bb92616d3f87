"""How the agent-events queue hands batches to the ingest Lambda: the deployed event source mapping
(infra/constructs/ingestion.py) and the benchmark (local/bench.py) both read these, so the bench
measures the batches production receives.

Ingest stores a batch with one write per agent-hour it holds (adapters/activity_table.py), so what sets
the cost per event is how many events of each agent a batch holds: an agent sends about 35 events an
hour (a heartbeat every 120 s when nothing else happens, local/traffic.py), one every ~100 s. A batch
that gathers for 300 s holds about three events of each active agent; 5 s would hold less than one.
300 s is SQS's largest batching window, and the 10 minutes of grace before an hour is metered
(docs/billing.md) still leave 5 minutes for the batch to be stored.

A batch also closes at ``BATCH_SIZE`` records or when the next record would take the invocation past
Lambda's 6 MB payload: about 3,000 forwarded agent events of 2 KB, which at 300 s is the traffic of
some 3,000 agents sending to this queue. Past that, batches close on size, not on time.
"""

from __future__ import annotations

BATCH_SIZE = 10_000  # SQS's largest batch for a standard queue (needs a batching window of 1 s or more)
BATCHING_WINDOW_SECONDS = 300
LAMBDA_PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024  # synchronous invocation payload, the whole SQS event
