"""Infra of collections: the chunk queue, its dead-letter queue and alarm, the chunk worker's event source with
bounded concurrency, and least-privilege grants (who may send, who may read the chunk inputs)."""

from __future__ import annotations

from typing import Any

import pytest

from infra.config import COLLECTION_WORKER_HANDLER, Config
from tests.infra.conftest import Synth
from tests.infra.test_reliability_infra import _statements

pytestmark = pytest.mark.infra


def _actions(statements: list[dict[str, Any]]) -> set[str]:
    return {a for st in statements for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}


def _resource_text(statement: dict[str, Any]) -> str:
    return str(statement["Resource"])


def test_chunk_queue_has_a_dlq_and_visibility_for_the_worker_timeout(synth: Synth) -> None:
    f = synth.stack.functions
    config = Config()
    queue = synth.template["Resources"][synth.logical_id(f.collection_queue)]["Properties"]
    assert queue["VisibilityTimeout"] == 6 * config.collection_worker_timeout_s
    assert queue["RedrivePolicy"]["maxReceiveCount"] == config.collection_max_receive_count
    assert queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0] == synth.logical_id(f.collection_dlq)
    assert queue["SqsManagedSseEnabled"] is True
    dlq = synth.template["Resources"][synth.logical_id(f.collection_dlq)]["Properties"]
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_worker_reads_the_queue_one_chunk_at_a_time_with_bounded_concurrency(synth: Synth) -> None:
    f = synth.stack.functions
    config = Config()
    (mapping,) = synth.resources("AWS::Lambda::EventSourceMapping").values()
    props = mapping["Properties"]
    assert props["FunctionName"]["Ref"] == synth.logical_id(f.collection_function)
    assert props["EventSourceArn"]["Fn::GetAtt"][0] == synth.logical_id(f.collection_queue)
    assert props["BatchSize"] == 1 and props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["ScalingConfig"] == {"MaximumConcurrency": config.collection_max_concurrency}
    fn = synth.template["Resources"][synth.logical_id(f.collection_function)]["Properties"]
    assert fn["ImageConfig"]["Command"] == [COLLECTION_WORKER_HANDLER]
    assert fn["Timeout"] == config.collection_worker_timeout_s
    assert fn["MemorySize"] == config.collection_worker_memory_mb
    assert fn["ReservedConcurrentExecutions"] == config.collection_max_concurrency


def test_dlq_depth_and_worker_errors_are_alarmed(synth: Synth) -> None:
    f = synth.stack.functions
    dlq_id = synth.logical_id(f.collection_dlq)
    alarms = synth.resources("AWS::CloudWatch::Alarm").values()
    assert any(a["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
               and a["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0] == dlq_id for a in alarms)
    fn_id = synth.logical_id(f.collection_function)
    assert any(a["Properties"]["MetricName"] == "Errors" and a["Properties"]["Dimensions"][0]["Value"]["Ref"] == fn_id
               for a in alarms)


def test_only_the_planner_and_the_sweep_send_chunks(synth: Synth) -> None:
    f = synth.stack.functions
    queue_id = synth.logical_id(f.collection_queue)

    def sends(role: Any) -> bool:
        return any("sqs:SendMessage" in _actions([st]) and queue_id in _resource_text(st)
                   for st in _statements(synth, role))

    assert sends(f.trigger_role) and sends(f.sweep_role)
    assert not sends(f.api_role) and not sends(f.collection_role)


def test_chunk_inputs_are_written_by_the_planner_and_read_by_the_worker_only(synth: Synth) -> None:
    f = synth.stack.functions

    def chunk_actions(role: Any) -> set[str]:
        return _actions([st for st in _statements(synth, role) if "uploads/*/chunks/*" in _resource_text(st)])

    assert chunk_actions(f.trigger_role) == {"s3:PutObject"}
    assert chunk_actions(f.collection_role) == {"s3:GetObject"}
    worker = _statements(synth, f.collection_role)
    # The worker touches no upload but its chunks, and deletes nothing.
    uploads = [st for st in worker if "uploads/" in _resource_text(st)]
    assert all("uploads/*/chunks/*" in _resource_text(st) for st in uploads)
    assert not {a for a in _actions(worker) if a.startswith("s3:Delete") or a in ("s3:*", "sqs:*")}
    env = synth.template["Resources"][synth.logical_id(f.trigger_function)]["Properties"]["Environment"]["Variables"]
    assert env["EMOTION_COLLECTION_QUEUE_URL"]["Ref"] == synth.logical_id(f.collection_queue)


def test_stale_time_must_exceed_the_chunk_visibility() -> None:
    with pytest.raises(ValueError, match="visibility"):
        Config(job_stale_s=1000, trigger_timeout_s=900, collection_worker_timeout_s=180)
    with pytest.raises(ValueError, match="collection_max_concurrency"):
        Config(collection_max_concurrency=1)
