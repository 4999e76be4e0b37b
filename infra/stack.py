"""The emotion service stack: storage, functions, API, GPU video (optional), monitoring, outputs."""

from __future__ import annotations

from typing import Any

from aws_cdk import Acknowledgment, CfnOutput, Stack, Validations
from aws_cdk import aws_events_targets as targets
from constructs import Construct

from infra.components.api import Api
from infra.components.functions import Functions
from infra.components.monitoring import PERIOD, Monitoring
from infra.components.storage import Storage
from infra.components.video import GpuVideo
from infra.config import Config


class EmotionServiceStack(Stack):
    """Everything the service needs in one region; every setting comes from ``Config``."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config

        self.storage = Storage(self, "Storage", config=config, event_bridge=config.gpu_video)
        # Routing by the key the service names: images (and, with the GPU path off, videos) go to the trigger
        # function, gpu-video uploads to Batch (GpuVideo's rule); the job API decides the route.
        self.functions = Functions(self, "Functions", config=config, storage=self.storage)
        self.api = Api(self, "Api", config=config, handler=self.functions.api_function)
        self.storage.allow_browser_origins([self.api.origin, *config.cors_origins])

        self.monitoring = Monitoring(self, "Monitoring", config=config)
        self.monitoring.alarm_function("ApiFunction", self.functions.api_function)
        self.monitoring.alarm_function("TriggerFunction", self.functions.trigger_function)
        self.monitoring.alarm_function("SweepFunction", self.functions.sweep_function)
        self.monitoring.alarm_queue_depth("TriggerDlq", self.functions.dead_letter_queue)
        self.monitoring.alarm_function("CollectionWorkerFunction", self.functions.collection_function)
        self.monitoring.alarm_queue_depth("CollectionDlq", self.functions.collection_dlq)
        self.monitoring.alarm_api_errors(self.api.rest_api.metric_server_error(period=PERIOD, statistic="Sum"))

        self.video: GpuVideo | None = None
        if config.gpu_video:
            self.video = GpuVideo(self, "GpuVideo", config=config, storage=self.storage)
            self.monitoring.alarm_queue_depth("VideoSubmitDlq", self.video.dead_letter_queue)
            # Operators get each failure event (job id, reason) by mail, and the alarm counts them.
            self.video.failed_jobs_rule.add_target(targets.SnsTopic(self.monitoring.topic))
            self.monitoring.alarm_failed_jobs(self.video.failed_jobs_rule)
            CfnOutput(self, "VideoJobQueueArn", value=self.video.job_queue.job_queue_arn)

        CfnOutput(self, "ApiUrl", value=self.api.rest_api.url, description="Base URL of the API stage")
        CfnOutput(
            self,
            "ApiKeyId",
            value=self.api.api_key.key_id,
            description="aws apigateway get-api-key --api-key <id> --include-value --query value --output text",
        )
        CfnOutput(self, "InputsBucketName", value=self.storage.inputs.bucket_name)
        CfnOutput(self, "ResultsBucketName", value=self.storage.results.bucket_name)
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)

        _acknowledge_cdk_helpers(self)


def _acknowledge_cdk_helpers(stack: Stack) -> None:
    """Findings on resources CDK itself adds: the S3 bucket-notification custom-resource provider."""
    for child in stack.node.children:
        if child.node.id.startswith("BucketNotificationsHandler"):
            Validations.of(child).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                    "AWSLambdaBasicExecutionRole]",
                    reason="CDK's deploy-time provider that writes the inputs bucket's notification "
                    "configuration; it only needs to write its own logs. The service functions use their own "
                    "roles without managed policies.",
                )
            )
