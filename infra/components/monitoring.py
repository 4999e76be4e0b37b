"""Alarms to one SNS topic: Lambda errors/throttles, dead-letter depth, API 5xx, failed Batch jobs."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import Config

PERIOD = Duration.minutes(5)


class Monitoring(Construct):
    """Owns the alarm topic; ``alarm_*`` methods add alarms that notify it."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "AlarmTopic", display_name="Emotion service alarms", enforce_ssl=True)
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        self.alarms: list[cloudwatch.Alarm] = []

    def _alarm(self, construct_id: str, metric: cloudwatch.IMetric, description: str) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        self.alarms.append(alarm)
        return alarm

    def alarm_function(self, name: str, function: lambda_.IFunction) -> None:
        """Errors and throttles of one function."""
        self._alarm(
            f"{name}Errors",
            function.metric_errors(period=PERIOD, statistic="Sum"),
            f"{name} function invocations failed",
        )
        self._alarm(
            f"{name}Throttles",
            function.metric_throttles(period=PERIOD, statistic="Sum"),
            f"{name} function throttled (reserved concurrency reached)",
        )

    def alarm_queue_depth(self, name: str, queue: sqs.IQueue) -> None:
        """Any message in a dead-letter queue."""
        self._alarm(
            f"{name}Depth",
            queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum"),
            f"{name}: events that could not be processed are waiting in the dead-letter queue",
        )

    def alarm_api_errors(self, metric: cloudwatch.IMetric) -> None:
        """Server errors of the REST API."""
        self._alarm("Api5xx", metric, "The API answered 5xx")

    def alarm_failed_jobs(self, rule: events.Rule) -> None:
        """Batch jobs that ended FAILED (counted through the EventBridge rule that matches them)."""
        self._alarm(
            "VideoJobsFailed",
            cloudwatch.Metric(
                namespace="AWS/Events",
                metric_name="TriggeredRules",
                dimensions_map={"RuleName": rule.rule_name},
                period=PERIOD,
                statistic="Sum",
            ),
            "GPU video jobs failed on AWS Batch",
        )
