"""The shared Lambda runtime: core layer asset content, and what `MeteringFunction` produces.

No function exists yet in functions/, so a throwaway one is synthesized from a temporary folder,
with cdk-nag on: the factory's output must be compliant as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from infra.app import METERING_STACK
from infra.config import CORE_LAYER_DIR, InfraSettings, default_context
from infra.constructs.lambda_runtime import LambdaRuntime, MeteringFunction
from infra.nag import apply_nag
from tests.infra.conftest import SynthesizedApp
from tests.infra.template_helpers import only_resource, resource_with_prefix, resources_of_type

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

PROBE_POWERTOOLS_VERSION = 31


@dataclass(frozen=True)
class Probe:
    template: dict[str, Any]
    outdir: Path


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Probe:
    functions_dir = tmp_path_factory.mktemp("functions")
    (functions_dir / "probe_worker").mkdir()
    (functions_dir / "probe_worker" / "handler.py").write_text(
        "def lambda_handler(event, context):\n    return event\n", encoding="utf-8"
    )
    outdir = tmp_path_factory.mktemp("probe-out")
    # A string, as `-c powertools_layer_version=31` would pass it.
    app = cdk.App(
        outdir=str(outdir),
        context={**default_context(), "powertools_layer_version": str(PROBE_POWERTOOLS_VERSION)},
    )
    settings = InfraSettings.from_scope(app)
    stack = cdk.Stack(app, "ProbeStack", env=cdk.Environment(region="eu-west-1"))
    runtime = LambdaRuntime(
        stack, "Runtime", powertools_layer_version=settings.powertools_layer_version, log_level="DEBUG"
    )
    MeteringFunction(
        stack,
        "Probe",
        runtime=runtime,
        name="probe_worker",
        description="throwaway function for the factory test",
        environment={"TABLE_NAME": "t"},
        functions_dir=functions_dir,
    )
    apply_nag(app)
    app.synth()  # raises if the factory's output had an unacknowledged cdk-nag finding
    template = json.loads((outdir / "ProbeStack.template.json").read_text(encoding="utf-8"))
    return Probe(template=template, outdir=outdir)


def _function(probe: Probe) -> dict[str, Any]:
    _, function = only_resource(probe.template, "AWS::Lambda::Function")
    properties: dict[str, Any] = function["Properties"]
    return properties


def test_function_is_python313_on_arm64_with_the_shared_handler(probe: Probe) -> None:
    function = _function(probe)
    assert function["Runtime"] == "python3.13"
    assert function["Architectures"] == ["arm64"]
    assert function["Handler"] == "handler.lambda_handler"
    assert function["MemorySize"] == 512
    assert function["Timeout"] == 30


def test_function_has_powertools_then_pinned_sdk_then_core_layers(probe: Probe) -> None:
    core_layer_id, _ = resource_with_prefix(probe.template, "AWS::Lambda::LayerVersion", "RuntimeCoreLayer")
    sdk_layer_id, _ = resource_with_prefix(
        probe.template, "AWS::Lambda::LayerVersion", "RuntimeDependenciesLayer"
    )
    assert len(resources_of_type(probe.template, "AWS::Lambda::LayerVersion")) == 2
    assert _function(probe)["Layers"] == [
        {
            "Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:017000801446:layer:"
            f"AWSLambdaPowertoolsPythonV3-python313-arm64:{PROBE_POWERTOOLS_VERSION}"
        },
        {"Ref": sdk_layer_id},
        {"Ref": core_layer_id},
    ]


def test_function_traces_with_xray(probe: Probe) -> None:
    assert _function(probe)["TracingConfig"] == {"Mode": "Active"}


def test_function_logs_to_its_own_group_kept_three_months(probe: Probe) -> None:
    log_group_id, log_group = only_resource(probe.template, "AWS::Logs::LogGroup")
    assert log_group["Properties"]["RetentionInDays"] == 90
    assert log_group["DeletionPolicy"] == "Retain"
    assert _function(probe)["LoggingConfig"] == {"LogGroup": {"Ref": log_group_id}}


def test_function_sets_powertools_environment(probe: Probe) -> None:
    assert _function(probe)["Environment"]["Variables"] == {
        "POWERTOOLS_SERVICE_NAME": "connect-metering-probe-worker",
        "POWERTOOLS_METRICS_NAMESPACE": "ConnectMetering",
        "POWERTOOLS_LOG_LEVEL": "DEBUG",
        "TABLE_NAME": "t",
    }


def test_function_role_has_no_managed_policy_and_writes_only_its_log_group(probe: Probe) -> None:
    _, role = only_resource(probe.template, "AWS::IAM::Role")
    assert "ManagedPolicyArns" not in role["Properties"]
    log_group_id, _ = only_resource(probe.template, "AWS::Logs::LogGroup")
    [policy] = resources_of_type(probe.template, "AWS::IAM::Policy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert {
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Effect": "Allow",
        "Resource": {"Fn::GetAtt": [log_group_id, "Arn"]},
    } in statements
    wildcard = [s for s in statements if s["Resource"] == "*"]
    assert wildcard == [
        {
            "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
            "Effect": "Allow",
            "Resource": "*",
        }
    ]


def test_factory_refuses_a_missing_handler(tmp_path: Path) -> None:
    stack = cdk.Stack(cdk.App(outdir=str(tmp_path / "out")), "Scratch")
    runtime = LambdaRuntime(stack, "Runtime", powertools_layer_version=27)
    with pytest.raises(FileNotFoundError, match=r"handler\.py"):
        MeteringFunction(
            stack, "Missing", runtime=runtime, name="nope", description="x", functions_dir=tmp_path
        )


def _staged_core_layer(template: dict[str, Any], outdir: Path, stack_name: str) -> Path:
    """The folder cdk staged for the layer: its S3 key names the asset in `<stack>.assets.json`."""
    _, layer = resource_with_prefix(template, "AWS::Lambda::LayerVersion", "RuntimeCoreLayer")
    asset_hash = layer["Properties"]["Content"]["S3Key"].removesuffix(".zip")
    assets = json.loads((outdir / f"{stack_name}.assets.json").read_text(encoding="utf-8"))
    source = assets["files"][asset_hash]["source"]
    assert source["packaging"] == "zip"
    staged = outdir / str(source["path"])
    assert staged.is_dir(), staged
    return staged


def test_core_layer_asset_ships_the_package_but_not_the_local_runtime(
    synthesized: SynthesizedApp, metering_json: dict[str, Any]
) -> None:
    # The exclusion is only meaningful while the source really has a local runtime to leave out.
    assert (CORE_LAYER_DIR / "python" / "connect_metering" / "local").is_dir()
    staged = _staged_core_layer(metering_json, synthesized.outdir, METERING_STACK)
    package = staged / "python" / "connect_metering"
    assert (package / "__init__.py").is_file()
    assert (package / "domain").is_dir()
    assert not (package / "local").exists()
    shipped = [p.relative_to(staged).as_posix() for p in staged.rglob("*")]
    assert not [p for p in shipped if "connect_metering/local" in p]
    assert not [p for p in shipped if "__pycache__" in p or p.endswith(".pyc") or ".egg-info" in p]


def test_core_layer_is_for_python313_arm64(metering: Template) -> None:
    metering.has_resource_properties(
        "AWS::Lambda::LayerVersion",
        {"CompatibleRuntimes": ["python3.13"], "CompatibleArchitectures": ["arm64"]},
    )
