"""Inputs and results buckets (plus the server-access-log bucket)."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import JOBS_PREFIX, RESULTS_PREFIX, UPLOADS_PREFIX, Config


class Storage(Construct):
    """Private, encrypted, TLS-only buckets with access logs and expiry of everything biometric."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config, event_bridge: bool) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.DESTROY if config.destroy_data_on_teardown else RemovalPolicy.RETAIN
        auto_delete = config.destroy_data_on_teardown

        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            # Server access log delivery only supports SSE-S3 on the target bucket.
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-logs", expiration=Duration.days(config.access_logs_expiration_days))
            ],
            removal_policy=removal,
            auto_delete_objects=auto_delete,
        )
        self.inputs = s3.Bucket(
            self,
            "Inputs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            versioned=False,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="inputs/",
            event_bridge_enabled=event_bridge,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-uploads",
                    prefix=UPLOADS_PREFIX,
                    expiration=Duration.days(config.uploads_expiration_days),
                ),
                s3.LifecycleRule(id="abort-multipart", abort_incomplete_multipart_upload_after=Duration.days(1)),
            ],
            removal_policy=removal,
            auto_delete_objects=auto_delete,
        )

        self.results = s3.Bucket(
            self,
            "Results",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="results/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-results",
                    prefix=RESULTS_PREFIX,
                    expiration=Duration.days(config.results_expiration_days),
                ),
                s3.LifecycleRule(
                    id="expire-job-records",
                    prefix=JOBS_PREFIX,
                    expiration=Duration.days(config.results_expiration_days),
                ),
                s3.LifecycleRule(id="abort-multipart", abort_incomplete_multipart_upload_after=Duration.days(1)),
            ],
            removal_policy=removal,
            auto_delete_objects=auto_delete,
        )

    def allow_browser_origins(self, origins: list[str]) -> None:
        """CORS for exactly these origins: presigned POST uploads, GET of results via presigned URLs."""
        if not origins:
            return
        self.inputs.add_cors_rule(
            allowed_methods=[s3.HttpMethods.POST, s3.HttpMethods.PUT],
            allowed_origins=origins,
            allowed_headers=["*"],
            exposed_headers=["ETag"],
            max_age=3000,
        )
        self.results.add_cors_rule(
            allowed_methods=[s3.HttpMethods.GET, s3.HttpMethods.HEAD],
            allowed_origins=origins,
            allowed_headers=["*"],
            max_age=3000,
        )
