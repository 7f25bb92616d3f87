"""The dependencies layer: the AWS SDK for Python exactly as pinned (and pydantic-settings, which the
Powertools layer lacks), built for python3.13 on arm64.

Why the functions do not use the runtime's SDK: the python3.13 runtime ships whichever boto3 Lambda
last updated it to, and `LicenseArn` only entered botocore's BatchMeterUsage and ResolveCustomer
models in 1.42.58; an older runtime SDK rejects the product's requests with ParamValidationError.
Layer content in /opt/python precedes the runtime's own libraries on sys.path ("Dependency search
path and runtime-included libraries", https://docs.aws.amazon.com/lambda/latest/dg/python-package.html),
so the functions import this SDK: the one the tests ran.

What goes in: boto3 and botocore at their pins in pyproject.toml, plus their dependencies
(s3transfer, jmespath, python-dateutil, six, urllib3) at the versions installed beside the tests.
The whole closure ships because AWS warns that an SDK dependency from a layer next to the runtime's
SDK can break when Lambda updates the runtime (same page). pip fetches wheels only, for the Lambda
platform, so no Docker and no compiler; the result depends on nothing but the pins.

`ensure_dependencies_layer` is idempotent: a stamp beside the layer records what was built, and while
it matches the pins nothing is rebuilt. A file lock keeps two synths (pytest workers) from building
at once. `python -m infra.dependencies_layer` is what `make layer-deps` runs.
"""

from __future__ import annotations

import enum
import fcntl
import json
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = REPO_ROOT / "pyproject.toml"
LAYERS_BUILD_DIR = REPO_ROOT / "build" / "layers"
# The asset directory holds only `python/`; the stamp and the lock live beside it, not in the layer.
DEPENDENCIES_LAYER_DIR = LAYERS_BUILD_DIR / "dependencies"

PINNED_ROOTS = ("boto3", "botocore", "pydantic-settings")
# What the AWS-managed Powertools layer already ships (its parser extra): pydantic and its own closure.
# pydantic-settings runs on that pydantic; shipping a second copy would mix two versions' files in
# /opt/python.
PROVIDED_BY_POWERTOOLS = frozenset(
    {"pydantic", "pydantic-core", "annotated-types", "typing-extensions", "typing-inspection"}
)
PYTHON_VERSION = "3.13"
PLATFORM = "manylinux2014_aarch64"
IMPLEMENTATION = "cp"
# Lambda's python3.13 arm64 environment, for the environment markers of the SDK's requirements.
TARGET_MARKERS = {
    "python_version": PYTHON_VERSION,
    "python_full_version": f"{PYTHON_VERSION}.0",
    "platform_machine": "aarch64",
    "platform_system": "Linux",
    "sys_platform": "linux",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}


class LayerBuildError(RuntimeError):
    """The layer cannot be built as pinned (a missing pin, a pip failure, an unexpected package)."""


@dataclass(frozen=True)
class LayerSpec:
    """Everything the layer's content depends on; the stamp is this, as JSON."""

    requirements: tuple[str, ...]
    python_version: str = PYTHON_VERSION
    platform: str = PLATFORM
    implementation: str = IMPLEMENTATION

    def as_json(self) -> str:
        return json.dumps({**asdict(self), "requirements": list(self.requirements)}, indent=2) + "\n"

    @property
    def versions(self) -> dict[str, str]:
        """Canonical package name -> pinned version."""
        pins = (Requirement(line) for line in self.requirements)
        return {canonicalize_name(pin.name): str(pin.specifier).removeprefix("==") for pin in pins}


class BuildOutcome(enum.Enum):
    BUILT = "built"
    UP_TO_DATE = "up to date"


def stamp_path(layer_dir: Path) -> Path:
    return layer_dir.with_name(f"{layer_dir.name}.stamp.json")


def pinned_versions(pyproject: Path = PYPROJECT, names: tuple[str, ...] = PINNED_ROOTS) -> dict[str, str]:
    """`name -> version` for each of `names`, which pyproject.toml must pin exactly (`name==X`)."""
    dependencies = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    pins: dict[str, str] = {}
    for line in dependencies:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        if name not in names:
            continue
        specifiers = list(requirement.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==":
            raise LayerBuildError(f"{pyproject}: {line!r} must be an exact pin (name==version)")
        pins[name] = specifiers[0].version
    missing = sorted(set(names) - set(pins))
    if missing:
        raise LayerBuildError(f"{pyproject} pins no version of {', '.join(missing)}")
    return pins


def _installed_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError as error:
        raise LayerBuildError(f"{name} is not installed here; run `make install` first") from error


def _runtime_dependencies(name: str) -> list[str]:
    """The requirements of an installed distribution that apply on Lambda python3.13 arm64."""
    environment = {key: str(value) for key, value in default_environment().items()} | TARGET_MARKERS
    wanted: list[str] = []
    for line in metadata.requires(name) or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            wanted.append(canonicalize_name(requirement.name))
    return wanted


def layer_spec(pyproject: Path = PYPROJECT) -> LayerSpec:
    """The pins from pyproject.toml and, for the rest of the closure, the versions the tests run with.

    The installed boto3 and botocore must be the pinned ones: otherwise the tests ran another SDK
    than the one this layer would ship.
    """
    pins = pinned_versions(pyproject)
    for name, version in pins.items():
        installed = _installed_version(name)
        if installed != version:
            raise LayerBuildError(
                f"{name} {installed} is installed but pyproject.toml pins {version}; run `make install`"
            )
    closure: dict[str, str] = {}
    pending = list(PINNED_ROOTS)
    while pending:
        name = pending.pop()
        if name in closure:
            continue
        closure[name] = pins.get(name) or _installed_version(name)
        pending.extend(
            dependency
            for dependency in _runtime_dependencies(name)
            if dependency not in PROVIDED_BY_POWERTOOLS
        )
    return LayerSpec(requirements=tuple(f"{name}=={closure[name]}" for name in sorted(closure)))


def is_current(layer_dir: Path, spec: LayerSpec) -> bool:
    """True when `layer_dir` holds a finished build of exactly `spec` (the stamp is written last)."""
    stamp = stamp_path(layer_dir)
    return (
        (layer_dir / "python").is_dir()
        and stamp.is_file()
        and stamp.read_text(encoding="utf-8") == spec.as_json()
    )


def installed_distributions(site_dir: Path) -> dict[str, str]:
    """Canonical name -> version of every distribution installed into `site_dir` (its .dist-info)."""
    found: dict[str, str] = {}
    for dist_info in site_dir.glob("*.dist-info"):
        distribution = metadata.Distribution.at(dist_info)
        found[canonicalize_name(distribution.metadata["Name"])] = distribution.version
    return found


def directory_size(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def _pip_install(spec: LayerSpec, site_dir: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        # Wheels for the Lambda platform only, never a local build; no bytecode compiled here.
        "--platform",
        spec.platform,
        "--python-version",
        spec.python_version,
        "--implementation",
        spec.implementation,
        "--only-binary=:all:",
        "--no-compile",
        # The spec is the whole closure already, minus what the Powertools layer provides.
        "--no-deps",
        "--target",
        str(site_dir),
        *spec.requirements,
    ]
    # Fixed arguments and pinned requirement strings: no shell, no user input.
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise LayerBuildError(f"pip could not build the dependencies layer:\n{result.stdout}{result.stderr}")


def _strip(site_dir: Path) -> None:
    """Drop what Lambda never imports: bytecode compiled elsewhere (AWS advises against shipping
    __pycache__) and console scripts such as jmespath's `jp.py`."""
    for cache in list(site_dir.rglob("__pycache__")):
        shutil.rmtree(cache)
    for compiled in list(site_dir.rglob("*.pyc")):
        compiled.unlink()
    shutil.rmtree(site_dir / "bin", ignore_errors=True)


def build(spec: LayerSpec, layer_dir: Path) -> None:
    """Build `spec` into `layer_dir/python`, replacing what was there only once the build succeeded."""
    staging = layer_dir.with_name(f"{layer_dir.name}.building")
    shutil.rmtree(staging, ignore_errors=True)
    site_dir = staging / "python"
    site_dir.mkdir(parents=True)
    _pip_install(spec, site_dir)
    _strip(site_dir)
    installed = installed_distributions(site_dir)
    if installed != spec.versions:
        raise LayerBuildError(f"the layer holds {installed}, expected exactly {spec.versions}")
    stamp_path(layer_dir).unlink(missing_ok=True)
    shutil.rmtree(layer_dir, ignore_errors=True)
    staging.rename(layer_dir)
    stamp_path(layer_dir).write_text(spec.as_json(), encoding="utf-8")


@contextmanager
def _exclusive(layer_dir: Path) -> Iterator[None]:
    layer_dir.parent.mkdir(parents=True, exist_ok=True)
    with layer_dir.with_name(f"{layer_dir.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_dependencies_layer(
    layer_dir: Path = DEPENDENCIES_LAYER_DIR,
    *,
    spec: LayerSpec | None = None,
    log: Callable[[str], None] | None = None,
) -> BuildOutcome:
    """Build the layer unless a finished build of the same pins is already there."""
    spec = spec or layer_spec()
    with _exclusive(layer_dir):
        if is_current(layer_dir, spec):
            return BuildOutcome.UP_TO_DATE
        if log:
            log(f"building the dependencies layer ({', '.join(spec.requirements)}) in {layer_dir}")
        build(spec, layer_dir)
        return BuildOutcome.BUILT


def built_spec(layer_dir: Path = DEPENDENCIES_LAYER_DIR) -> LayerSpec:
    """The spec of the finished build in `layer_dir`; raises if there is none."""
    stamp = stamp_path(layer_dir)
    if not ((layer_dir / "python").is_dir() and stamp.is_file()):
        raise FileNotFoundError(
            f"the dependencies layer is not built in {layer_dir}: run `make layer-deps` "
            "(or `python -m infra.dependencies_layer`)"
        )
    recorded = json.loads(stamp.read_text(encoding="utf-8"))
    return LayerSpec(
        requirements=tuple(recorded["requirements"]),
        python_version=recorded["python_version"],
        platform=recorded["platform"],
        implementation=recorded["implementation"],
    )


def main() -> None:
    outcome = ensure_dependencies_layer(log=print)
    size_mb = directory_size(DEPENDENCIES_LAYER_DIR) / 1_000_000
    requirements = ", ".join(built_spec().requirements)
    print(f"dependencies layer {outcome.value}: {requirements} ({size_mb:.1f} MB unzipped)")


if __name__ == "__main__":
    main()
