"""Counts by one dimension (a reason, an outcome) as Powertools single metrics, one per value.

``single_metric`` publishes at once, even when ``POWERTOOLS_METRICS_DISABLED`` is set (the local runtime
runs the handlers in-process and sets it), so that setting is honoured here.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from connect_metering.observability import METRICS_NAMESPACE


def count_by(name: str, dimension: str, counts: Mapping[str, int]) -> None:
    if is_metrics_disabled():
        return
    for value, count in sorted(counts.items()):
        if count:
            with single_metric(
                name=name, unit=MetricUnit.Count, value=count, namespace=METRICS_NAMESPACE
            ) as metric:
                metric.add_dimension(name=dimension, value=value)


def count_unreadable(metrics: Metrics, counts: Mapping[str, int]) -> None:
    """Stored items readers skipped (connect_metering.unreadable): the total on the function's own
    metrics (what the alarm watches), and the split by reader."""
    metrics.add_metric(name="UnreadableItems", unit=MetricUnit.Count, value=sum(counts.values()))
    count_by("UnreadableItems", "Reader", counts)
