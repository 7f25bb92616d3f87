"""The dependencies layer: the synthesized asset holds the pinned SDK, with the Marketplace models the
product needs, and every function of the back end loads it after Powertools."""

from __future__ import annotations

import gzip
import json
import re
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from infra.app import METERING_STACK
from infra.config import REPO_ROOT
from infra.dependencies_layer import (
    DEPENDENCIES_LAYER_DIR,
    BuildOutcome,
    LayerBuildError,
    LayerSpec,
    built_spec,
    directory_size,
    ensure_dependencies_layer,
    is_current,
    layer_spec,
    pinned_versions,
    stamp_path,
)
from tests.infra.conftest import SynthesizedApp
from tests.infra.template_helpers import resource_with_prefix, resources_of_type

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

MB = 1_000_000
# Lambda's limit for a function and all its layers, unzipped.
LAMBDA_UNZIPPED_LIMIT = 250 * MB
# What the SDK layer may take of it, leaving room for Powertools (with pydantic), the core layer and
# the function code. Measured: about 28 MB with botocore 1.44.
DEPENDENCIES_LAYER_BUDGET = 100 * MB


def _pyproject_pin(name: str) -> str:
    """The pin read straight from pyproject.toml, independently of the layer builder."""
    dependencies = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "dependencies"
    ]
    [pin] = [line for line in dependencies if re.fullmatch(rf"{name}==[\w.]+", line)]
    return str(pin.split("==")[1])


def _staged_asset(outdir: Path, stack_name: str, resource: dict[str, Any]) -> Path:
    asset_hash = resource["Properties"]["Content"]["S3Key"].removesuffix(".zip")
    assets = json.loads((outdir / f"{stack_name}.assets.json").read_text(encoding="utf-8"))
    staged = outdir / str(assets["files"][asset_hash]["source"]["path"])
    assert staged.is_dir(), staged
    return staged


@pytest.fixture(scope="module")
def layer_id(metering_json: dict[str, Any]) -> str:
    logical_id, _ = resource_with_prefix(
        metering_json, "AWS::Lambda::LayerVersion", "RuntimeDependenciesLayer"
    )
    return logical_id


@pytest.fixture(scope="module")
def staged_layer(synthesized: SynthesizedApp, metering_json: dict[str, Any], layer_id: str) -> Path:
    return _staged_asset(synthesized.outdir, METERING_STACK, metering_json["Resources"][layer_id])


def _module_version(package_dir: Path) -> str:
    match = re.search(r"^__version__ = ['\"]([^'\"]+)['\"]", (package_dir / "__init__.py").read_text(), re.M)
    assert match, package_dir
    return match.group(1)


def _marketplace_model(staged_layer: Path) -> dict[str, Any]:
    """The newest meteringmarketplace service model in the layer's botocore (plain or gzipped JSON)."""
    versions = sorted((staged_layer / "python" / "botocore" / "data" / "meteringmarketplace").iterdir())
    assert versions
    newest = versions[-1]
    plain, packed = newest / "service-2.json", newest / "service-2.json.gz"
    text = (
        plain.read_text(encoding="utf-8")
        if plain.is_file()
        else gzip.decompress(packed.read_bytes()).decode()
    )
    model: dict[str, Any] = json.loads(text)
    return model


def test_layer_ships_the_pinned_boto3_and_botocore(staged_layer: Path) -> None:
    site = staged_layer / "python"
    assert _module_version(site / "botocore") == _pyproject_pin("botocore")
    assert _module_version(site / "boto3") == _pyproject_pin("boto3")


def test_tests_run_the_sdk_the_layer_ships(staged_layer: Path) -> None:
    # The point of the layer: Lambda runs the SDK these tests ran.
    assert metadata.version("botocore") == _module_version(staged_layer / "python" / "botocore")
    assert metadata.version("boto3") == _module_version(staged_layer / "python" / "boto3")


def test_layer_botocore_knows_license_arn_for_batch_meter_usage_and_resolve_customer(
    staged_layer: Path,
) -> None:
    model = _marketplace_model(staged_layer)
    shapes, operations = model["shapes"], model["operations"]
    batch_input = shapes[operations["BatchMeterUsage"]["input"]["shape"]]
    usage_records = shapes[batch_input["members"]["UsageRecords"]["shape"]]
    usage_record = shapes[usage_records["member"]["shape"]]
    assert "LicenseArn" in usage_record["members"]
    resolve_output = shapes[operations["ResolveCustomer"]["output"]["shape"]]
    assert "LicenseArn" in resolve_output["members"]
    assert "CustomerAWSAccountId" in resolve_output["members"]


def test_layer_holds_the_sdk_closure_only_and_no_bytecode(staged_layer: Path) -> None:
    site = staged_layer / "python"
    assert [p.name for p in staged_layer.iterdir()] == ["python"]
    distributions = sorted(
        re.sub(r"-[^-]+\.dist-info$", "", p.name).lower() for p in site.glob("*.dist-info")
    )
    assert distributions == [
        "boto3",
        "botocore",
        "jmespath",
        "pydantic_settings",
        "python_dateutil",
        "python_dotenv",
        "s3transfer",
        "six",
        "urllib3",
    ]
    shipped = [p.relative_to(staged_layer).as_posix() for p in staged_layer.rglob("*")]
    assert not [p for p in shipped if "__pycache__" in p or p.endswith(".pyc")]
    assert not (site / "bin").exists()


def test_layer_fits_lambdas_unzipped_size_limit(staged_layer: Path) -> None:
    size = directory_size(staged_layer)
    assert size <= DEPENDENCIES_LAYER_BUDGET, f"{size / MB:.1f} MB"
    assert DEPENDENCIES_LAYER_BUDGET < LAMBDA_UNZIPPED_LIMIT


def test_layer_is_for_python313_arm64_and_names_its_versions(
    metering_json: dict[str, Any], layer_id: str
) -> None:
    properties = metering_json["Resources"][layer_id]["Properties"]
    assert properties["CompatibleRuntimes"] == ["python3.13"]
    assert properties["CompatibleArchitectures"] == ["arm64"]
    assert f"botocore=={_pyproject_pin('botocore')}" in properties["Description"]
    assert len(properties["Description"]) <= 256  # Lambda's limit for a layer description


def test_every_function_loads_the_sdk_layer_after_powertools(
    metering_json: dict[str, Any], layer_id: str
) -> None:
    functions = resources_of_type(metering_json, "AWS::Lambda::Function")
    assert len(functions) >= 6
    for logical_id, function in functions.items():
        layers = function["Properties"]["Layers"]
        [powertools] = [
            i for i, layer in enumerate(layers) if "AWSLambdaPowertoolsPython" in json.dumps(layer)
        ]
        assert {"Ref": layer_id} in layers, logical_id
        assert layers.index({"Ref": layer_id}) > powertools, logical_id


def test_builder_reads_exact_pins_from_pyproject() -> None:
    assert pinned_versions() == {
        "boto3": _pyproject_pin("boto3"),
        "botocore": _pyproject_pin("botocore"),
        "pydantic-settings": _pyproject_pin("pydantic-settings"),
    }


def test_builder_refuses_a_range_instead_of_a_pin(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\ndependencies = ["boto3>=1.40", "botocore==1.44.5"]\n', encoding="utf-8")
    with pytest.raises(LayerBuildError, match="exact pin"):
        pinned_versions(pyproject)


def test_spec_pins_the_whole_closure_for_lambda_python313_arm64() -> None:
    spec = layer_spec()
    assert spec.python_version == "3.13"
    assert spec.platform == "manylinux2014_aarch64"
    assert set(spec.versions) == {
        "boto3",
        "botocore",
        "jmespath",
        "pydantic-settings",
        "python-dateutil",
        "python-dotenv",
        "s3transfer",
        "six",
        "urllib3",
    }
    assert all(line.count("==") == 1 for line in spec.requirements)


def test_an_unchanged_pin_set_is_not_rebuilt(staged_layer: Path) -> None:
    # The layer was built (or found current) by the session's synth; asking again changes nothing.
    before = stamp_path(DEPENDENCIES_LAYER_DIR).stat().st_mtime_ns
    assert ensure_dependencies_layer() is BuildOutcome.UP_TO_DATE
    assert stamp_path(DEPENDENCIES_LAYER_DIR).stat().st_mtime_ns == before


def test_a_changed_pin_makes_the_stamp_stale() -> None:
    spec = layer_spec()
    assert is_current(DEPENDENCIES_LAYER_DIR, spec)
    bumped = LayerSpec(
        requirements=tuple(line.replace("botocore==", "botocore==0.") for line in spec.requirements)
    )
    assert not is_current(DEPENDENCIES_LAYER_DIR, bumped)
    other_platform = LayerSpec(requirements=spec.requirements, platform="manylinux2014_x86_64")
    assert not is_current(DEPENDENCIES_LAYER_DIR, other_platform)


def test_a_missing_layer_is_reported_with_the_command_that_builds_it(tmp_path: Path) -> None:
    assert not is_current(tmp_path / "dependencies", layer_spec())
    with pytest.raises(FileNotFoundError, match="make layer-deps"):
        built_spec(tmp_path / "dependencies")
