"""CDK entry point: `python infra/app.py` (what cdk.json runs) or `build_app(...)` from the tests.

Two stacks: MeteringStack in the seller's account and ForwarderStack, the template customers
deploy. cdk-nag's AWS Solutions rules run on every synth and any unacknowledged finding fails it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script, Python puts infra/ first on sys.path, where infra/constructs would shadow
    # the `constructs` library; the repo root instead makes `infra.*` importable.
    _INFRA_DIR = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _INFRA_DIR]
    sys.path.insert(0, str(_INFRA_DIR.parent))

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import aws_cdk as cdk

from infra.config import REPO_ROOT, InfraSettings, default_context
from infra.dependencies_layer import ensure_dependencies_layer
from infra.nag import apply_nag, assert_synth_clean
from infra.stacks.forwarder_stack import ForwarderStack
from infra.stacks.metering_stack import MeteringStack

METERING_STACK = "MeteringStack"
FORWARDER_STACK = "ForwarderStack"


def build_app(outdir: str, context: dict[str, Any] | None = None) -> cdk.App:
    """The app with both stacks and cdk-nag wired in; `context` overrides cdk.json's defaults.

    Every way of synthesizing (make, `npx cdk synth` through cdk.json, the tests) comes through here,
    so this is where the pinned-SDK layer is built when its stamp is missing or stale; while the pins
    are unchanged this is a file comparison.
    """
    ensure_dependencies_layer(log=lambda line: print(line, file=sys.stderr))
    app = cdk.App(outdir=outdir, context={**default_context(), **(context or {})})
    settings = InfraSettings.from_scope(app)
    MeteringStack(
        app,
        METERING_STACK,
        settings=settings,
        env=cdk.Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=settings.region),
        description="connect-metering: AWS Marketplace SaaS metering for an Amazon Connect add-on",
    )
    ForwarderStack(app, FORWARDER_STACK, settings=settings)
    apply_nag(app)
    return app


def main() -> None:
    # The CDK CLI tells the app where to write the assembly; run directly, it is ./cdk.out.
    outdir = os.environ.get("CDK_OUTDIR") or str(REPO_ROOT / "cdk.out")
    build_app(outdir).synth()
    assert_synth_clean(outdir)


if __name__ == "__main__":
    main()
