"""cdk-nag: both stacks are clean, every acknowledgement has a reason, and the guard can fail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_sqs as sqs
from constructs import IConstruct

from infra.app import FORWARDER_STACK, METERING_STACK
from infra.nag import VALIDATION_REPORT, acknowledge, apply_nag, assert_synth_clean, unacknowledged_findings
from tests.infra.conftest import SynthesizedApp

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


@pytest.mark.parametrize("stack_name", [METERING_STACK, FORWARDER_STACK])
def test_stack_has_no_unacknowledged_finding(synthesized: SynthesizedApp, stack_name: str) -> None:
    assert unacknowledged_findings(synthesized.stack(stack_name)) == []


def test_synth_validation_report_is_clean(synthesized: SynthesizedApp) -> None:
    report = json.loads((synthesized.outdir / VALIDATION_REPORT).read_text(encoding="utf-8"))
    assert [r for r in report["pluginReports"] if r["conclusion"] != "success"] == []
    assert_synth_clean(synthesized.outdir)


def _acknowledgements(scope: IConstruct) -> list[tuple[str, str, Any]]:
    key = cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    return [
        (node.node.path, rule_id, reason)
        for node in scope.node.find_all()
        for entry in node.node.metadata
        if entry.type == key
        for rule_id, reason in dict(entry.data).items()
    ]


def test_every_acknowledgement_carries_a_written_reason(synthesized: SynthesizedApp) -> None:
    acknowledgements = _acknowledgements(synthesized.app)
    assert acknowledgements, "expected the known acknowledgements (rule DLQs, X-Ray, runtime pin)"
    for path, rule_id, reason in acknowledgements:
        assert isinstance(reason, str) and len(reason) >= 20, (path, rule_id, reason)


def test_acknowledge_refuses_an_empty_reason(tmp_path: Path) -> None:
    stack = cdk.Stack(cdk.App(outdir=str(tmp_path)), "Scratch")
    with pytest.raises(ValueError, match="written reason"):
        acknowledge(stack, "AwsSolutions-SQS3", " ")


def test_a_non_compliant_resource_fails_the_synth(tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(app, "NonCompliant")
    sqs.Queue(stack, "BareQueue")  # error level: no DLQ (SQS3), no TLS-only policy (SQS4)
    dynamodb.Table(  # warning level: no point-in-time recovery (DDB3)
        stack, "BareTable", partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING)
    )
    apply_nag(app)
    with pytest.raises(RuntimeError, match="Validation"):
        app.synth()
    report = json.loads((outdir / VALIDATION_REPORT).read_text(encoding="utf-8"))
    rules = {
        violation["ruleName"]: violation["severity"]
        for plugin in report["pluginReports"]
        for violation in plugin["violations"]
    }
    assert rules["AwsSolutions-SQS3"] == "error"
    assert rules["AwsSolutions-SQS4"] == "error"
    assert rules["AwsSolutions-DDB3"] == "warning"  # a warning fails the synth too
    with pytest.raises(RuntimeError, match="AwsSolutions-DDB3"):
        assert_synth_clean(outdir)
    assert "NonCompliant/BareQueue/Resource: AwsSolutions-SQS3" in unacknowledged_findings(stack)
