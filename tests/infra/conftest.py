"""Fixtures of the infrastructure tests: the real app synthesized once per session.

Synth costs seconds (jsii starts node, assets are staged), so every test reads the same cloud
assembly. Under `pytest -n 2 --dist loadgroup` the tests share the `infra` xdist group, so they all
run on one worker and the app is synthesized once, not once per worker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from infra.app import FORWARDER_STACK, METERING_STACK, build_app


@dataclass(frozen=True)
class SynthesizedApp:
    app: cdk.App
    outdir: Path

    def template_json(self, stack_name: str) -> dict[str, Any]:
        template: dict[str, Any] = json.loads(
            (self.outdir / f"{stack_name}.template.json").read_text(encoding="utf-8")
        )
        return template

    def template(self, stack_name: str) -> Template:
        return Template.from_json(self.template_json(stack_name))

    def stack(self, stack_name: str) -> cdk.Stack:
        child = self.app.node.find_child(stack_name)
        assert isinstance(child, cdk.Stack)
        return child


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    outdir = tmp_path_factory.mktemp("cdk-out")
    app = build_app(str(outdir))
    app.synth()
    return SynthesizedApp(app=app, outdir=outdir)


@pytest.fixture(scope="session")
def metering(synthesized: SynthesizedApp) -> Template:
    return synthesized.template(METERING_STACK)


@pytest.fixture(scope="session")
def metering_json(synthesized: SynthesizedApp) -> dict[str, Any]:
    return synthesized.template_json(METERING_STACK)


@pytest.fixture(scope="session")
def forwarder(synthesized: SynthesizedApp) -> Template:
    return synthesized.template(FORWARDER_STACK)


@pytest.fixture(scope="session")
def forwarder_json(synthesized: SynthesizedApp) -> dict[str, Any]:
    return synthesized.template_json(FORWARDER_STACK)
