"""How fast one meter worker calls BatchMeterUsage: the worker Lambda (functions/meter_worker) paces
itself at this rate, and ``replay --engine core`` paces its in-process worker the same, without
importing the Lambda's handler module (Powertools, settings) to read it.

Two workers (the meter worker event source mapping's maximum concurrency) at 4 calls/s each make 8 calls/s,
under the 10 calls/s Marketplace quota (tests/infra/test_concurrency.py)."""

from __future__ import annotations

CALLS_PER_SECOND = 4.0
