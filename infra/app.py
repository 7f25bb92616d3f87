"""CDK entry point: `python infra/app.py` (what cdk.json runs) or `build_app(...)` from the tests.

Two stacks: MeteringStack in the seller's account and ForwarderStack, the template customers
deploy. cdk-nag's AWS Solutions rules run on every synth and any unacknowledged finding fails it.
Context values come from cdk.json, then `-c key=value` (the CDK CLI's, or this script's own when run
directly): the README's Deploy section lists them all.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
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

from infra.config import REPO_ROOT, ContextError, InfraSettings, default_context
from infra.dependencies_layer import ensure_dependencies_layer
from infra.nag import apply_nag, assert_synth_clean
from infra.stacks.forwarder_stack import ForwarderStack
from infra.stacks.metering_stack import MeteringStack

METERING_STACK = "MeteringStack"
FORWARDER_STACK = "ForwarderStack"


def build_app(
    outdir: str, context: dict[str, Any] | None = None, *, require_product_code: bool = False
) -> cdk.App:
    """The app with both stacks and cdk-nag wired in; `context` overrides cdk.json's defaults.

    `require_product_code` (what `python infra/app.py`, so `cdk synth` and `cdk deploy`, asks for) refuses
    the placeholder product code unless the context declares a local synth; the tests' synths do not.

    Every way of synthesizing (make, `npx cdk synth` through cdk.json, the tests) comes through here,
    so this is where the pinned-SDK layer is built when its stamp is missing or stale; while the pins
    are unchanged this is a file comparison.
    """
    app = cdk.App(outdir=outdir, context={**default_context(), **(context or {})})
    # -c account= wins; without it, the account of the CLI's credentials (the CLI sets CDK_DEFAULT_ACCOUNT).
    settings = InfraSettings.from_scope(app, default_account=os.environ.get("CDK_DEFAULT_ACCOUNT"))
    if require_product_code:
        settings.refuse_placeholder_product_code()
    ensure_dependencies_layer(log=lambda line: print(line, file=sys.stderr))
    MeteringStack(
        app,
        METERING_STACK,
        settings=settings,
        env=cdk.Environment(account=settings.account, region=settings.region),
        description="connect-metering: AWS Marketplace SaaS metering for an Amazon Connect add-on",
    )
    ForwarderStack(app, FORWARDER_STACK, settings=settings)
    apply_nag(app)
    return app


def context_from_arguments(argv: Sequence[str]) -> dict[str, str]:
    """`-c key=value` (repeatable), as the CDK CLI takes them, for `python infra/app.py` run directly."""
    parser = argparse.ArgumentParser(prog="infra/app.py", description="Synthesize the CDK app into cdk.out.")
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    pairs = parser.parse_args(list(argv)).context
    context: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            parser.error(f"-c {pair!r}: expected KEY=VALUE")
        context[key.strip()] = value
    return context


def main(argv: Sequence[str] | None = None) -> None:
    # The CDK CLI tells the app where to write the assembly (and passes its -c values in
    # CDK_CONTEXT_JSON, which cdk.App reads); run directly, it is ./cdk.out.
    outdir = os.environ.get("CDK_OUTDIR") or str(REPO_ROOT / "cdk.out")
    context = context_from_arguments(sys.argv[1:] if argv is None else argv)
    try:
        app = build_app(outdir, context, require_product_code=True)
    except ContextError as error:
        raise SystemExit(f"infra/app.py: {error}") from None
    app.synth()
    assert_synth_clean(outdir)


if __name__ == "__main__":
    main()
