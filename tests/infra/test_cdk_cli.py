"""The CDK CLI (pinned in package.json) synthesizes the app offline through cdk.json, with the very
`npx cdk synth` command the README's Deploy section documents (example values for its placeholders)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.config import REPO_ROOT

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

CDK_CLI = REPO_ROOT / "node_modules" / ".bin" / "cdk"
README = REPO_ROOT / "README.md"

ACCOUNT = "123456789012"
REGION = "us-east-1"
PRODUCT_CODE = "abc123example"
TEMPLATE_URL = "https://seller-templates.s3.us-east-1.amazonaws.com/forwarder/v1/forwarder.template.json"
SUBSCRIPTION_TOPIC = f"arn:aws:sns:us-east-1:287250355862:aws-mp-subscription-notification-{PRODUCT_CODE}"
ENTITLEMENT_TOPIC = f"arn:aws:sns:us-east-1:287250355862:aws-mp-entitlement-notification-{PRODUCT_CODE}"
# What a seller types for each placeholder of the documented commands.
EXAMPLE_VALUES = {
    "<seller account id>": ACCOUNT,
    "<product code>": PRODUCT_CODE,
    "<forwarder template URL>": TEMPLATE_URL,
    "<subscription topic ARN>": SUBSCRIPTION_TOPIC,
    "<entitlement topic ARN>": ENTITLEMENT_TOPIC,
}


def deploy_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Deploy\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def documented_command(verb: str) -> list[str]:
    """The first `npx cdk <verb>` line of the Deploy section's first bash block, placeholders filled in."""
    block = re.search(r"```bash\n(.*?)```", deploy_section(), re.DOTALL)
    assert block is not None, "README Deploy: no bash block"
    for line in block.group(1).splitlines():
        if line.startswith(f"npx cdk {verb} "):
            command = line.split("  #", 1)[0].strip()
            for placeholder, value in EXAMPLE_VALUES.items():
                command = command.replace(placeholder, value)
            assert "<" not in command, f"README Deploy: a placeholder without an example value: {command}"
            return shlex.split(command)
    raise AssertionError(f"README Deploy: no `npx cdk {verb}` line")


def context_keys(command: list[str]) -> list[str]:
    return [command[i + 1].split("=", 1)[0] for i, word in enumerate(command) if word == "-c"]


def documented_context_table() -> set[str]:
    return set(re.findall(r"^\| `([a-z_-]+)` \|", deploy_section(), re.MULTILINE))


def cli_environment() -> dict[str, str]:
    return {
        **os.environ,
        # cdk.json runs `python infra/app.py`: the project's interpreter must come first.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
    }


def test_the_documented_commands_agree_and_every_context_value_is_in_the_table() -> None:
    synth, deploy = documented_command("synth"), documented_command("deploy")
    assert synth[:4] == ["npx", "cdk", "synth", "MeteringStack"]
    assert deploy[:4] == ["npx", "cdk", "deploy", "MeteringStack"]
    assert deploy[4:] == synth[4:], (
        "README Deploy: `cdk deploy` must pass the context `cdk synth` was tested with"
    )
    keys = context_keys(synth)
    assert {
        "account",
        "region",
        "product_code",
        "forwarder_template_url",
        "marketplace_sns_topic_arns",
    } <= set(keys)
    table = documented_context_table()
    assert set(keys) <= table
    cdk_json = json.loads((REPO_ROOT / "cdk.json").read_text(encoding="utf-8"))
    assert set(cdk_json["context"]) <= table, "every cdk.json default has its row in the README"
    assert "product_code" not in cdk_json["context"], "a deploy must name its product code"


@pytest.mark.skipif(not CDK_CLI.exists(), reason="node_modules has no aws-cdk CLI: run `npm ci` first")
def test_the_documented_synth_puts_account_region_and_product_code_in_the_template(tmp_path: Path) -> None:
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip("npx is not on PATH: Node.js is needed for the CDK CLI")
    outdir = tmp_path / "cdk.out"
    env = cli_environment()
    env.pop("CDK_DEFAULT_ACCOUNT", None)  # only -c account= may name the account here
    arguments = documented_command("synth")[1:]  # after `npx`
    # The command comes from the README with fixed example values; a list, no shell.
    result = subprocess.run(  # noqa: S603
        [npx, "--no-install", *arguments, "--quiet", "--output", str(outdir)],
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

    manifest = json.loads((outdir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["artifacts"]["MeteringStack"]["environment"] == f"aws://{ACCOUNT}/{REGION}"
    metering: dict[str, Any] = json.loads(
        (outdir / "MeteringStack.template.json").read_text(encoding="utf-8")
    )
    resources = metering["Resources"].values()
    functions = [r for r in resources if r["Type"] == "AWS::Lambda::Function"]
    environments = [f["Properties"].get("Environment", {}).get("Variables", {}) for f in functions]
    product_codes = [variables["PRODUCT_CODE"] for variables in environments if "PRODUCT_CODE" in variables]
    assert len(product_codes) >= 3 and set(product_codes) == {PRODUCT_CODE}  # registration, lifecycle, admin
    # The sign-up success page and the console's environments page link the forwarder template.
    assert [v["FORWARDER_TEMPLATE_URL"] for v in environments if "FORWARDER_TEMPLATE_URL" in v] == [
        TEMPLATE_URL,
        TEMPLATE_URL,
    ]
    topics = {r["Properties"]["TopicArn"] for r in resources if r["Type"] == "AWS::SNS::Subscription"}
    assert topics == {SUBSCRIPTION_TOPIC, ENTITLEMENT_TOPIC}
    # A concrete environment: the code comes from the bootstrap asset bucket of that account and region,
    # and the key policies name that account's root.
    asset_bucket = f"cdk-hnb659fds-assets-{ACCOUNT}-{REGION}"
    assert {f["Properties"]["Code"]["S3Bucket"] for f in functions} == {asset_bucket}
    text = json.dumps(metering)
    assert f":iam::{ACCOUNT}:root" in text
    assert "connectmetering" not in text.replace(PRODUCT_CODE, "")

    forwarder = (outdir / "ForwarderStack.template.json").read_text(encoding="utf-8")
    assert PRODUCT_CODE not in forwarder and ACCOUNT not in forwarder  # the customer's template is generic


def test_app_py_refuses_a_deployable_synth_without_a_product_code(tmp_path: Path) -> None:
    env = {**cli_environment(), "CDK_OUTDIR": str(tmp_path / "cdk.out")}
    # Fixed arguments, no shell.
    result = subprocess.run(  # noqa: S603
        [sys.executable, str(REPO_ROOT / "infra" / "app.py"), "-c", f"account={ACCOUNT}"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("infra/app.py: product_code is not set: pass -c product_code=")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "cdk.out" / "MeteringStack.template.json").exists()
