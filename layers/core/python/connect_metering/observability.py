"""Logging, metrics and tracing: one Powertools Logger, Metrics and Tracer for whichever handler runs.

Each Lambda runs one handler, and the service name comes from its environment (``POWERTOOLS_SERVICE_NAME``
``connect-metering-<function>``, set by the CDK construct from ``powertools_environment``), so one set of
instances serves every handler. Metric names and the ``ConnectMetering`` namespace are what the alarms
watch: changing them silences an alarm.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

METRICS_NAMESPACE = "ConnectMetering"
SERVICE_PREFIX = "connect-metering"

logger = Logger()
metrics = Metrics(namespace=METRICS_NAMESPACE)
tracer = Tracer()


def service_name(function: str) -> str:
    """``meter_worker`` -> ``connect-metering-meter-worker``: the service every log line and trace names."""
    return f"{SERVICE_PREFIX}-{function.replace('_', '-')}"


def powertools_environment(function: str, log_level: str) -> dict[str, str]:
    """The Powertools variables a function of this product runs with (the CDK construct sets them)."""
    return {
        "POWERTOOLS_SERVICE_NAME": service_name(function),
        "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
        "POWERTOOLS_LOG_LEVEL": log_level,
    }
