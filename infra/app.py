"""CDK entry point: ``npx cdk synth`` / ``npx cdk deploy`` run ``python -m infra.app`` (see cdk.json)."""

from __future__ import annotations

import os
from typing import Any

from aws_cdk import App, Environment, Tags, Validations
from cdk_nag import AwsSolutionsChecks

from infra.config import Config
from infra.stack import EmotionServiceStack

STACK_NAME = "EmotionService"


def build_app(context: dict[str, Any] | None = None, *, outdir: str | None = None, nag: bool = True) -> App:
    """Build the app; ``nag`` registers cdk-nag's AwsSolutions pack, which fails synth on any finding."""
    app = App(context=context or {}, outdir=outdir)
    config = Config.from_node(app.node)
    account = os.environ.get("CDK_DEFAULT_ACCOUNT")
    region = os.environ.get("CDK_DEFAULT_REGION")
    env = Environment(account=account, region=region) if account and region else None
    stack = EmotionServiceStack(
        app,
        app.node.try_get_context("stack_name") or STACK_NAME,
        config=config,
        env=env,
        description="Serverless facial-emotion recognition (API Gateway, Lambda containers, S3, AWS Batch GPU)",
    )
    Tags.of(stack).add("service", "emotion")
    if nag:
        Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return app


def main() -> None:
    """Synthesize to cdk.out (the CLI passes the output directory through the environment)."""
    build_app().synth()


if __name__ == "__main__":
    main()
