"""GanetiCluster against the real transcript: connect(), the exact write requests, dry-run flags, change log."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.errors import ConfigError
from libcluster.ganeti import GanetiError, RapiAuthError, UnknownClusterError, connect
from libcluster.ganeti.cluster import GanetiCluster, instance_create_body
from libcluster.ganeti.errors import RapiNotFoundError
from libcluster.ganeti.jobs import Job, SkippedJob
from tests.unit.ganeti.ganeti_replay import FIXTURES, load_jsonl

Write = Callable[[GanetiCluster], Any]


def _cluster_config(**overrides: Any) -> Section:
    lab = {
        "rapi_url": "https://198.18.0.10:5080",
        "rapi_user": "cookbooks",
        "rapi_password": "rw-secret-password",
        "rapi_ro_user": "cookbooks-ro",
        "rapi_ro_password": "ro-secret-password",
        "ca_file": "/etc/ganeti-cookbooks/lab.pem",
        "timeout": 12,
        "job_timeout": 99,
        "verify_ignore": ["ENODESETUP"],
        **overrides,
    }
    data = {"ganeti": {"clusters": {"lab": lab, "prod1": dict(lab, rapi_url="https://ganeti01.example.org:5080")}}}
    return Section(data, "", "test-config.yaml")


def test_connect_reads_the_cluster_section() -> None:
    cluster = connect(_cluster_config(), "lab", dry_run=False, changes=ChangeLog(dry_run=False), remote=None)
    assert cluster.name == "lab"
    assert cluster.rapi.url == "https://198.18.0.10:5080"
    assert cluster.rapi.timeout == 12.0
    assert cluster.job_timeout == 99.0


def test_connect_to_an_unknown_cluster_lists_the_configured_ones() -> None:
    with pytest.raises(UnknownClusterError) as caught:
        connect(_cluster_config(), "prod2", dry_run=False, changes=ChangeLog(dry_run=False), remote=None)
    assert "prod2" in str(caught.value) and "lab, prod1" in str(caught.value)
    assert isinstance(caught.value, ConfigError)


def test_connect_names_a_missing_key_and_refuses_plain_http() -> None:
    config = _cluster_config()
    del config["ganeti"]["clusters"]["lab"]["rapi_ro_password"]
    with pytest.raises(ConfigError, match=r"ganeti\.clusters\.lab\.rapi_ro_password"):
        connect(config, "lab", dry_run=False, changes=ChangeLog(dry_run=False), remote=None)
    with pytest.raises(ConfigError, match="https"):
        connect(_cluster_config(rapi_url="http://198.18.0.10:5080"), "lab", dry_run=False,
                changes=ChangeLog(dry_run=False), remote=None)


def test_gnt_commands_need_a_remote() -> None:
    cluster = connect(_cluster_config(), "lab", dry_run=False, changes=ChangeLog(dry_run=False), remote=None)
    with pytest.raises(GanetiError, match="no Remote given"):
        _ = cluster.commands


def test_create_body_is_the_one_ganeti_accepted(transcript: list[dict[str, Any]]) -> None:
    accepted = [e for e in transcript if e.get("method") == "POST" and e.get("path") == "/2/instances"
                and e.get("status") == 200 and e["body"]["disk_template"] in ("diskless", "file")
                and e["body"]["os_type"] == "noop" and "vcpus" in e["body"]["beparams"]]
    assert len(accepted) >= 3
    for exchange in accepted:
        sent = exchange["body"]
        built = instance_create_body(
            sent["name"],
            disk_template=sent["disk_template"],
            disks=[disk["size"] for disk in sent["disks"]],
            os_type=sent["os_type"],
            memory=sent["beparams"]["memory"],
            vcpus=sent["beparams"]["vcpus"],
            pnode=sent["pnode"],
            ip_check=sent["ip_check"],
        )
        assert built == sent


def test_create_needs_a_node_or_an_allocator() -> None:
    with pytest.raises(ValueError, match="pnode or iallocator"):
        instance_create_body("x.lab.example", disk_template="file", disks=[1024], os_type="noop", memory=128, vcpus=1)


WRITES: list[tuple[str, str, Write]] = [
    ("POST", "/2/instances", lambda c: c.create_instance(
        "inst2.gl.test", disk_template="file", disks=[1024], os_type="noop", memory=128, vcpus=1,
        pnode="node1.gl.test")),
    ("DELETE", "/2/instances/inst3.gl.test", lambda c: c.remove_instance("inst3.gl.test")),
    ("PUT", "/2/instances/inst1.gl.test/shutdown", lambda c: c.shutdown_instance("inst1.gl.test", timeout=10)),
    ("PUT", "/2/instances/inst1.gl.test/startup", lambda c: c.startup_instance("inst1.gl.test")),
    ("POST", "/2/instances/inst1.gl.test/reboot", lambda c: c.reboot_instance("inst1.gl.test", reboot_type="soft")),
    ("PUT", "/2/instances/inst1.gl.test/modify", lambda c: c.modify_instance(
        "inst1.gl.test", beparams={"maxmem": 256, "minmem": 256, "vcpus": 2})),
    ("PUT", "/2/instances/inst2.gl.test/modify", lambda c: c.modify_instance(
        "inst2.gl.test", disks=[("add", -1, {"size": 1024})])),
    ("POST", "/2/instances/inst2.gl.test/disk/0/grow", lambda c: c.grow_disk("inst2.gl.test", 0, 64)),
    ("PUT", "/2/instances/inst2.gl.test/rename", lambda c: c.rename_instance("inst2.gl.test", "inst3.gl.test")),
    ("PUT", "/2/instances/inst4.gl.test/migrate", lambda c: c.migrate_instance(
        "inst4.gl.test", target_node="node2.gl.test", mode="live")),
    ("PUT", "/2/instances/inst4.gl.test/failover", lambda c: c.failover_instance(
        "inst4.gl.test", target_node="node3.gl.test", shutdown_timeout=5)),
    ("PUT", "/2/instances/inst1.gl.test/tags", lambda c: c.add_tags("instance", "inst1.gl.test",
                                                                     ["gl-smoke", "role:test"])),
    ("DELETE", "/2/instances/inst1.gl.test/tags", lambda c: c.remove_tags("instance", "inst1.gl.test", ["gl-smoke"])),
    ("PUT", "/2/nodes/node3.gl.test/role", lambda c: c.set_node_role("node3.gl.test", "drained", force=True)),
    ("POST", "/2/nodes/node3.gl.test/migrate", lambda c: c.migrate_node(
        "node3.gl.test", mode="live", iallocator="hail")),
    ("POST", "/2/nodes/node2.gl.test/evacuate", lambda c: c.evacuate_node(
        "node2.gl.test", mode="primary-only", iallocator="hail")),
]
"""Each write, called as a cookbook would, against the transcript request it must reproduce exactly."""

QUERY_FLAGGED = {"/2/instances", "/2/instances/inst3.gl.test", "/2/instances/inst1.gl.test/shutdown",
                 "/2/instances/inst1.gl.test/startup", "/2/instances/inst1.gl.test/reboot",
                 "/2/instances/inst1.gl.test/tags", "/2/nodes/node2.gl.test/evacuate"}
"""Resources that take `?dry-run=1`; the others read `dry_run` from the body (or have no dry-run)."""


def _recorded(transcript: list[dict[str, Any]], method: str, path: str) -> list[dict[str, Any]]:
    """Every accepted request to method + path (the replay picks the one whose query and body match)."""
    return [e for e in transcript if e.get("method") == method and e.get("path") == path and e["status"] == 200]


def _used(candidates: list[dict[str, Any]], adapter: Any) -> dict[str, Any]:
    """The one candidate exchange the replay answered with."""
    [used] = [exchange for exchange in candidates if exchange not in adapter.exchanges]
    return used


@pytest.mark.parametrize(("method", "path", "write"), WRITES, ids=[f"{m} {p}" for m, p, _ in WRITES])
def test_write_sends_the_recorded_request_and_records_the_job(
    make_cluster: Any, transcript: list[dict[str, Any]], method: str, path: str, write: Write
) -> None:
    candidates = _recorded(transcript, method, path)
    cluster, adapter, changes = make_cluster(candidates)
    job = write(cluster)
    exchange = _used(candidates, adapter)
    assert isinstance(job, Job)
    assert job.id == exchange["response"]
    assert [seen.user for seen in adapter.seen] == ["cookbooks"]
    [change] = changes.changes
    assert change.system == "ganeti" and not change.dry_run
    assert change.detail["job_id"] == exchange["response"]
    assert change.detail["cluster"] == "lab"


def _dry_run_exchange(exchange: dict[str, Any]) -> dict[str, Any]:
    """The recorded exchange as it must look with Ganeti's dry-run flag (query or body, per resource)."""
    flagged = copy.deepcopy(exchange)
    if isinstance(exchange.get("body"), str):
        return flagged
    if exchange["path"] in QUERY_FLAGGED:
        flagged["params"] = {**(exchange.get("params") or {}), "dry-run": 1}
    else:
        flagged["body"] = {**(exchange.get("body") or {}), "dry_run": True}
    return flagged


@pytest.mark.parametrize(("method", "path", "write"), WRITES, ids=[f"{m} {p}" for m, p, _ in WRITES])
def test_dry_run_sends_only_writes_ganeti_checks_without_executing(
    make_cluster: Any, transcript: list[dict[str, Any]], method: str, path: str, write: Write
) -> None:
    candidates = [_dry_run_exchange(exchange) for exchange in _recorded(transcript, method, path)]
    cluster, adapter, changes = make_cluster(candidates, dry_run=True)
    job = write(cluster)
    [change] = changes.changes
    assert change.dry_run
    if path.endswith("/role"):
        assert isinstance(job, SkippedJob)
        assert adapter.seen == []
        assert change.detail["checked"] is False
        assert job.wait().skipped
        return
    assert isinstance(job, Job)
    [seen] = adapter.seen
    if path in QUERY_FLAGGED:
        assert seen.params.get("dry-run") == ["1"]
        assert not isinstance(seen.body, dict) or "dry_run" not in seen.body
    else:
        assert seen.body["dry_run"] is True
        assert seen.params == {}
    assert change.detail["checked"] is True
    assert change.detail["job_id"] == _used(candidates, adapter)["response"]


def test_node_migrate_never_mixes_query_and_body(make_cluster: Any, transcript: list[dict[str, Any]]) -> None:
    """Ganeti ignores the node migrate body when any query argument is given: dry-run must go in the body."""
    candidates = [_dry_run_exchange(e) for e in _recorded(transcript, "POST", "/2/nodes/node3.gl.test/migrate")]
    cluster, adapter, _ = make_cluster(candidates, dry_run=True)
    cluster.migrate_node("node3.gl.test", mode="live", iallocator="hail")
    assert adapter.seen[0].params == {}
    assert adapter.seen[0].body == {"mode": "live", "iallocator": "hail", "dry_run": True}


def test_reads_run_in_dry_run_as_read_only_user(make_cluster: Any, transcript: list[dict[str, Any]]) -> None:
    reads = [e for e in transcript if e.get("method") == "GET" and e["status"] == 200 and e.get("path") in
             ("/2/features", "/2/os", "/2/nodes", "/2/groups", "/2/instances")][:5]
    cluster, adapter, changes = make_cluster(reads, dry_run=True)
    assert cluster.features() == reads[0]["response"]
    assert [node.raw for node in cluster.nodes()] == reads[1]["response"]
    assert [group.raw for group in cluster.groups()] == reads[2]["response"]
    assert [instance.raw for instance in cluster.instances()] == reads[3]["response"]
    assert cluster.os_list() == reads[4]["response"]
    assert {seen.user for seen in adapter.seen} == {"cookbooks-ro"}
    assert changes.changes == []


def test_node_uuids_are_mapped_to_names_through_the_query_resource(make_cluster: Any) -> None:
    exchanges = load_jsonl(FIXTURES / "rapi-query-lab-3.0.2.jsonl")
    ok = next(e for e in exchanges if e["status"] == 200)
    cluster, adapter, _ = make_cluster([ok])
    row = ok["response"]["data"][1]
    name, uuid = row[0][1], row[1][1]
    assert cluster.node_names([name]) == [name]
    assert adapter.seen == []  # names need no request
    assert cluster.node_names([uuid, "not-a-uuid-name"]) == [name, "not-a-uuid-name"]
    (seen,) = adapter.seen
    assert (seen.path, seen.params, seen.user) == ("/2/query/node", {"fields": ["name,uuid"]}, "cookbooks")


def test_a_refused_query_is_an_auth_error(make_cluster: Any) -> None:
    refused = next(e for e in load_jsonl(FIXTURES / "rapi-query-lab-3.0.2.jsonl") if e["status"] == 403)
    cluster, _, _ = make_cluster([refused])
    with pytest.raises(RapiAuthError, match="Forbidden"):
        cluster.node_names(["e4ce2df2-c5e4-47d0-b003-a856a5321479"])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.reboot_instance("x", reboot_type="cold"), "reboot_type"),
        (lambda c: c.set_node_role("n", "boss"), "role"),
        (lambda c: c.migrate_instance("x", mode="fast"), "mode"),
        (lambda c: c.add_tags("vm", "x", ["t"]), "tag kind"),
        (lambda c: c.add_tags("node", None, ["t"]), "need a name"),
        (lambda c: c.modify_instance("x"), "nothing to change"),
    ],
)
def test_invalid_arguments_are_refused_before_any_request(make_cluster: Any, call: Write, message: str) -> None:
    cluster, adapter, changes = make_cluster([])
    with pytest.raises(ValueError, match=message):
        call(cluster)
    assert adapter.seen == [] and changes.changes == []


def test_boot_ids_of_named_nodes_ask_only_those_through_a_filtered_query(make_cluster: Any) -> None:
    exchanges = load_jsonl(FIXTURES / "rapi-depends-lab-3.0.2.jsonl")
    cluster, adapter, _ = make_cluster(exchanges)
    assert cluster.boot_ids(["node3.lab.example"]) == {"node3.lab.example": "ca3ea986-93dc-4673-b322-62e1144ae0a4"}
    (seen,) = adapter.seen
    assert (seen.method, seen.path, seen.user) == ("PUT", "/2/query/node", "cookbooks")
    assert seen.body["qfilter"] == ["|", ["=", "name", "node3.lab.example"]]


def test_a_migrate_can_wait_in_ganetis_queue_for_other_jobs(make_cluster: Any) -> None:
    exchanges = load_jsonl(FIXTURES / "rapi-depends-lab-3.0.2.jsonl")
    cluster, adapter, changes = make_cluster(exchanges)
    job = cluster.migrate_instance("rec-dep.lab.example", target_node="node4.lab.example", depends=[115])
    assert job.id == 116
    assert adapter.seen[-1].body == {"target_node": "node4.lab.example", "depends": [[115, ["success"]]]}
    assert [change.detail.get("job_id") for change in changes.changes] == [116]


def test_node_config_reads_the_configuration_only_and_an_unknown_name_is_not_found(make_cluster: Any) -> None:
    exchanges = [e for e in load_jsonl(FIXTURES / "rapi-query-lab-3.0.2.jsonl") if e["method"] == "PUT"]
    cluster, adapter, _ = make_cluster(exchanges)
    node = cluster.node_config("node3.lab.example")
    assert (node.role, node.group_uuid, node.primary_instances) == (
        "C", "db3eae50-3da3-4f96-b91f-aa27aa9c0e67", ("rec-q.lab.example",))
    assert node.memory_free is None, "no live data: the node's noded is not asked"
    with pytest.raises(RapiNotFoundError, match=r"nodeX\.lab\.example not found"):
        cluster.node_config("nodeX.lab.example")
    assert [seen.body["qfilter"] for seen in adapter.seen] == [
        ["|", ["=", "name", "node3.lab.example"]], ["|", ["=", "name", "nodeX.lab.example"]]]
