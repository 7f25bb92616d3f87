"""The shared Lambda runtime: three layers and a function factory.

Every function of the back end is a `MeteringFunction`: python3.13 on arm64 (Graviton: cheaper per
GB-second, and the Powertools layer below is built for it), X-Ray tracing on, and a log group the
stack owns, with a retention, instead of one Lambda creates on first use and keeps forever. Code
comes from layers, never per-function dependencies, so synth needs no Docker:

- Powertools, from the AWS-managed public layer;
- the AWS SDK pinned in pyproject.toml (infra/dependencies_layer.py builds it), so the functions run
  the SDK the tests ran instead of whichever one the runtime ships, and pydantic-settings;
- the project's core package (`layers/core`, the local runtime left out).

Order: Lambda applies layers in the order given and, for a file present in several, keeps the one
of the last layer applied. The SDK layer comes after Powertools so that, should the Powertools layer
ever carry an SDK package too, the pinned one is what lands in /opt/python.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from connect_metering.observability import powertools_environment
from infra.config import CORE_LAYER_DIR, FUNCTIONS_DIR
from infra.dependencies_layer import DEPENDENCIES_LAYER_DIR, built_spec
from infra.nag import acknowledge

RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64
HANDLER = "handler.lambda_handler"
POWERTOOLS_ACCOUNT = "017000801446"
POWERTOOLS_LAYER_NAME = "AWSLambdaPowertoolsPythonV3-python313-arm64"

# Three months: a usage dispute about a monthly Marketplace invoice arrives after that month has
# closed, so the logs of a whole billing cycle plus the invoice and dispute period must still be
# there. The write-ahead ledger in DynamoDB is the durable audit trail; logs are for diagnosis.
LOG_RETENTION = logs.RetentionDays.THREE_MONTHS

# The local runtime (replay, simulate, serve, bench, Marketplace simulator) must never ship.
CORE_LAYER_EXCLUDES = (
    "python/connect_metering/local",
    "python/connect_metering/local/**",
    "**/__pycache__",
    "**/*.pyc",
    "**/*.egg-info",
)


def powertools_layer_arn(version: int) -> str:
    """The public Powertools v3 layer for python3.13/arm64 in the deploying partition and region."""
    return cdk.Fn.sub(
        f"arn:${{AWS::Partition}}:lambda:${{AWS::Region}}:{POWERTOOLS_ACCOUNT}:layer:"
        f"{POWERTOOLS_LAYER_NAME}:{version}"
    )


class LambdaRuntime(Construct):
    """The layers every function uses; create one per stack and pass it to `MeteringFunction`.

    The dependencies layer must already be built (`make layer-deps`; `build_app` builds it).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        powertools_layer_version: int,
        log_level: str = "INFO",
        core_layer_dir: Path = CORE_LAYER_DIR,
        dependencies_layer_dir: Path = DEPENDENCIES_LAYER_DIR,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_level = log_level
        dependencies = built_spec(dependencies_layer_dir)
        self.dependencies_layer = lambda_.LayerVersion(
            self,
            "DependenciesLayer",
            code=lambda_.Code.from_asset(str(dependencies_layer_dir), exclude=["**/__pycache__", "**/*.pyc"]),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="Pinned AWS SDK for Python and pydantic-settings: "
            + ", ".join(dependencies.requirements),
        )
        self.core_layer = lambda_.LayerVersion(
            self,
            "CoreLayer",
            code=lambda_.Code.from_asset(str(core_layer_dir), exclude=list(CORE_LAYER_EXCLUDES)),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="connect_metering core package (domain, services, adapters); no local runtime",
        )
        self.powertools_layer = lambda_.LayerVersion.from_layer_version_arn(
            self, "PowertoolsLayer", powertools_layer_arn(powertools_layer_version)
        )

    @property
    def layers(self) -> list[lambda_.ILayerVersion]:
        return [self.powertools_layer, self.dependencies_layer, self.core_layer]


class MeteringFunction(Construct):
    """A Lambda from `functions/<name>/handler.py` with the shared runtime, tracing and logging."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        runtime: LambdaRuntime,
        name: str,
        description: str,
        environment: Mapping[str, str] | None = None,
        memory_size: int = 512,
        timeout: cdk.Duration | None = None,
        reserved_concurrent_executions: int | None = None,
        functions_dir: Path = FUNCTIONS_DIR,
    ) -> None:
        super().__init__(scope, construct_id)
        code_dir = functions_dir / name
        if not (code_dir / "handler.py").is_file():
            raise FileNotFoundError(f"{code_dir / 'handler.py'} does not exist")

        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=LOG_RETENTION,
            # Billing diagnostics outlive a stack replacement; the retention still applies.
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        # An explicit role instead of the default one, which carries the AWS-managed
        # AWSLambdaBasicExecutionRole (logs on every log group of the account).
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"connect-metering {name} function",
        )
        self.log_group.grant_write(self.role)

        self.function = lambda_.Function(
            self,
            "Function",
            description=description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=HANDLER,
            code=lambda_.Code.from_asset(
                str(code_dir), exclude=["**/__pycache__", "**/*.pyc", "tests", "tests/**"]
            ),
            layers=runtime.layers,
            role=self.role,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            # 512 MB: pydantic model building and boto3 client creation are CPU-bound on cold start,
            # and Lambda CPU scales with memory; callers lower it for trivial handlers.
            memory_size=memory_size,
            # 30 s is far above a batch of DynamoDB and Marketplace calls; queue consumers derive
            # their visibility timeout from this (6x), so keep it at 60 s or below for them.
            timeout=timeout or cdk.Duration.seconds(30),
            reserved_concurrent_executions=reserved_concurrent_executions,
            environment={
                **powertools_environment(name, runtime.log_level),
                **(environment or {}),
            },
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions; CDK "
            "adds exactly these two actions on * for active tracing.",
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "python3.13 is pinned on purpose: the AWS-managed Powertools layer used here is the "
            "python313-arm64 build and the SDK layer is built for 3.13; moving to a newer runtime "
            "means moving layers and tests together.",
        )
