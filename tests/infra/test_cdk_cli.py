"""The CDK CLI (pinned in package.json) synthesizes the app offline through cdk.json."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.config import REPO_ROOT

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

CDK_CLI = REPO_ROOT / "node_modules" / ".bin" / "cdk"


@pytest.mark.skipif(not CDK_CLI.exists(), reason="node_modules has no aws-cdk CLI: run `npm ci` first")
def test_cdk_synth_through_cdk_json(tmp_path: Path) -> None:
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip("npx is not on PATH: Node.js is needed for the CDK CLI")
    outdir = tmp_path / "cdk.out"
    env = {
        **os.environ,
        # cdk.json runs `python infra/app.py`: the project's interpreter must come first.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
    }
    # The command is fixed (no user input); a list, no shell.
    result = subprocess.run(  # noqa: S603
        [npx, "--no-install", "cdk", "synth", "--quiet", "--output", str(outdir)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for stack_name in ("MeteringStack", "ForwarderStack"):
        assert (outdir / f"{stack_name}.template.json").is_file()
