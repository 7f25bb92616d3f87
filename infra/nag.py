"""cdk-nag on every synth, and the only way this app acknowledges a finding.

cdk-nag 3 is a CDK policy-validation plugin (`Validations.of(app).add_plugins(...)`); the v2
`NagSuppressions` API is gone and acknowledgements are `Validations.of(construct).acknowledge(...)`.
Checked with cdk-nag 3.0.2 on aws-cdk-lib 2.275.0: any unacknowledged finding, warning level
included (e.g. AwsSolutions-DDB3), makes `app.synth()` raise `RuntimeError: ValidationFailed` and
write `validation-report.json` to the assembly. `assert_synth_clean` re-reads that report after a
successful synth so a future version that only warned would still fail the build.

The "CfnEventBusPolicy#principal is deprecated" line printed on each synth comes from cdk-nag's
EventBusOpenAccess rule reading that property, not from this app's code.
"""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

VALIDATION_REPORT = "validation-report.json"
_MIN_REASON_LENGTH = 20


def apply_nag(app: cdk.App) -> None:
    """Run the AWS Solutions rules on every stack of `app` at synth time."""
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding on `scope` (and everything below it), with its reason.

    `rule_id` is the bare rule id (`AwsSolutions-SQS3`) or a finding id
    (`AwsSolutions-IAM5[Resource::*]`): cdk-nag matches these, not the `AwsSolutions::` prefixed
    form the CLI prints, when it checks a tree directly.
    """
    if len(reason.strip()) < _MIN_REASON_LENGTH:
        raise ValueError(f"acknowledging {rule_id} needs a written reason, got {reason!r}")
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=rule_id, reason=reason))


def unacknowledged_findings(scope: IConstruct) -> list[str]:
    """`path: rule` for every finding the AWS Solutions rules still report under `scope`."""
    report = AwsSolutionsChecks().validate_scope(scope)
    return sorted(
        f"{resource.construct_path}: {violation.rule_name}"
        for violation in report.violations
        for resource in violation.violating_resources
    )


def assert_synth_clean(outdir: str | Path) -> None:
    """Raise if the assembly's validation report lists any failed plugin report."""
    report_path = Path(outdir) / VALIDATION_REPORT
    if not report_path.is_file():
        return
    report = json.loads(report_path.read_text(encoding="utf-8"))
    failures = [
        f"{violation['ruleName']} at {construct['constructPath']}"
        for plugin in report.get("pluginReports", [])
        if plugin.get("conclusion") != "success"
        for violation in plugin.get("violations", [])
        for construct in violation.get("violatingConstructs", [])
    ]
    if failures:
        raise RuntimeError("cdk-nag findings not acknowledged: " + "; ".join(failures))
