"""Typed Ganeti models built from recorded RAPI answers (Ganeti 3.0.2): fields, raw access, bad records."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from libcluster.ganeti.errors import GanetiError
from libcluster.ganeti.models import Group, Instance, JobInfo, Node


def _answer(exchanges: list[dict[str, Any]], path: str, method: str = "GET") -> Any:
    return next(e["response"] for e in exchanges if e.get("path") == path and e.get("method") == method
                and e.get("status") == 200 and e["response"])


def test_instance_fields_come_from_the_recorded_answer(transcript: list[dict[str, Any]]) -> None:
    raw = _answer(transcript, "/2/instances/inst1.gl.test")
    instance = Instance.from_rapi(raw)
    assert (instance.name, instance.status, instance.admin_state) == ("inst1.gl.test", "running", "up")
    assert instance.running
    assert (instance.primary_node, instance.secondary_nodes) == ("node1.gl.test", ())
    assert instance.nodes == ("node1.gl.test",)
    assert (instance.disk_template, instance.os) == ("diskless", "noop")
    assert (instance.memory, instance.vcpus) == (raw["beparams"]["maxmem"], raw["beparams"]["vcpus"])
    assert instance.nic_macs == tuple(raw["nic.macs"]) and instance.nic_ips == (None,)
    assert instance.uuid == raw["uuid"]


def test_a_model_keeps_the_raw_answer_and_reads_as_a_mapping(transcript: list[dict[str, Any]]) -> None:
    raw = _answer(transcript, "/2/instances/inst1.gl.test")
    instance = Instance.from_rapi(raw)
    assert instance.raw is raw
    assert instance["hvparams"] == raw["hvparams"] and instance.get("nope", 7) == 7
    assert dict(instance) == raw and "nic.macs" in instance
    with pytest.raises(dataclasses.FrozenInstanceError):
        instance.status = "ADMIN_down"  # type: ignore[misc]


def test_a_stopped_instance_is_not_running(transcript: list[dict[str, Any]]) -> None:
    raw = {**_answer(transcript, "/2/instances/inst1.gl.test"), "status": "ADMIN_down", "admin_state": "down"}
    assert not Instance.from_rapi(raw).running


def test_node_fields_name_ganeti_lists(transcript: list[dict[str, Any]]) -> None:
    raw = _answer(transcript, "/2/nodes")[0]
    node = Node.from_rapi({**raw, "pinst_list": ["a.gl.test"], "sinst_list": ["b.gl.test"]})
    assert (node.name, node.role, node.master, node.offline) == ("node1.gl.test", "M", True, False)
    assert node.primary_instances == ("a.gl.test",) and node.secondary_instances == ("b.gl.test",)
    assert node.instances == ("a.gl.test", "b.gl.test")
    assert (node.memory_total, node.memory_free, node.disk_free) == (raw["mtotal"], raw["mfree"], raw["dfree"])
    assert node.group_uuid == raw["group.uuid"] and node.cpus == raw["ctotal"]


def test_an_offline_node_has_unknown_sizes(transcript: list[dict[str, Any]]) -> None:
    raw = {**_answer(transcript, "/2/nodes")[0], "offline": True, "role": "O", "mfree": None, "dfree": None}
    node = Node.from_rapi(raw)
    assert node.offline and not node.master and node.memory_free is None and node.disk_free is None


def test_group_fields(transcript: list[dict[str, Any]]) -> None:
    raw = _answer(transcript, "/2/groups")[0]
    group = Group.from_rapi(raw)
    assert (group.name, group.uuid, group.nodes) == ("default", raw["uuid"], ("node1.gl.test",))
    assert group.ipolicy["vcpu-ratio"] == raw["ipolicy"]["vcpu-ratio"]


def test_job_fields_times_and_log(lab_exchanges: list[dict[str, Any]]) -> None:
    raw = _answer(lab_exchanges, "/2/jobs/19")
    job = JobInfo.from_rapi(raw)
    assert (job.id, job.status, job.exists, job.finished) == (19, "success", True, True)
    assert job.summary == ("NODE_MIGRATE(node2.lab.example)",)
    assert job.received == raw["received_ts"][0] + raw["received_ts"][1] / 1e6
    assert job.started is not None and job.ended is not None and job.received < job.started < job.ended
    assert job.log == () and raw["oplog"] == [[]]
    assert job["ops"][0]["OP_ID"] == "OP_NODE_MIGRATE"


def test_job_log_lines_come_from_each_opcode_log(lab_exchanges: list[dict[str, Any]]) -> None:
    polls = [e["response"]["log_entries"] for e in lab_exchanges if e.get("path") == "/2/jobs/21/wait"]
    entries = [entry for answer in polls for entry in answer]  # the job's log as its long-polls delivered it
    job = JobInfo.from_rapi({**_answer(lab_exchanges, "/2/jobs/19"), "id": 21, "oplog": [entries]})
    assert [line.text for line in job.log] == [entry[3] for entry in entries] and len(entries) > 5
    assert {line.job_id for line in job.log} == {21}
    assert job.log[0].timestamp == entries[0][1][0] + entries[0][1][1] / 1e6


def test_an_unknown_job_id_is_answered_with_nulls(lab_exchanges: list[dict[str, Any]]) -> None:
    job = JobInfo.from_rapi(_answer(lab_exchanges, "/2/jobs/9999999"))
    assert (job.id, job.status, job.exists, job.finished, job.log) == (9999999, None, False, False, ())


@pytest.mark.parametrize(("model", "raw", "missing"), [
    (Instance, {"name": "vm1.example.org", "status": "running", "admin_state": "up"}, "pnode"),
    (Instance, {"status": "running", "admin_state": "up", "pnode": "n1"}, "name"),
    (Node, {"name": "n1", "role": "R"}, "group.uuid"),
    (Group, {"name": "A"}, "uuid"),
    (JobInfo, {"status": "success"}, "id"),
])
def test_a_record_without_a_needed_field_is_an_error_naming_it(model: Any, raw: dict[str, Any], missing: str) -> None:
    with pytest.raises(GanetiError, match=f"without '{missing}'"):
        model.from_rapi(raw)


def test_cluster_reads_return_models(make_cluster: Any, transcript: list[dict[str, Any]]) -> None:
    reads = [e for e in transcript if e.get("method") == "GET" and e.get("status") == 200 and e.get("path") in
             ("/2/nodes", "/2/groups", "/2/instances/inst1.gl.test")][:3]
    cluster, adapter, _ = make_cluster(reads)
    assert [node.raw for node in cluster.nodes()] == reads[0]["response"]
    assert [group.name for group in cluster.groups()] == [raw["name"] for raw in reads[1]["response"]]
    instance = cluster.instance("inst1.gl.test")
    assert isinstance(instance, Instance) and instance.raw == reads[2]["response"]
    assert adapter.seen[0].params == {"bulk": ["1"]}
