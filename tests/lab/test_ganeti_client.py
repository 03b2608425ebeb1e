"""The Ganeti client against the real lab cluster: RAPI writes with job log lines, failures, sub-jobs, SSH.

Every instance is named `cbt-<random>.lab.example` and removed in a finalizer, even when the
test fails. Other helpers use the same cluster at the same time, so checks look at this
test's own instances and jobs, never at cluster-wide counts.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from libcluster import config as config_module
from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.ganeti import (
    GanetiCluster,
    JobFailedError,
    LogEntry,
    RapiAuthError,
    RapiNotFoundError,
    connect,
)
from libcluster.ganeti.rapi import Credentials, RapiClient
from libcluster.remote import Remote

Part = Callable[[str], dict[str, Any]]


@pytest.fixture(scope="module")
def root_config(lab: dict[str, Any]) -> Section:
    """The generated `cookbook -c` configuration of the lab (skips when the lab is not up)."""
    ganeti = lab.get("ganeti") or {}
    path = Path(lab.get("config", ""))
    if not ganeti.get("up") or not path.is_file():
        pytest.skip("lab Ganeti part or its generated configuration is not available")
    return config_module.load(path)


def _connect(config: Section, *, dry_run: bool = False) -> tuple[GanetiCluster, ChangeLog]:
    changes = ChangeLog(dry_run=dry_run)
    remote = Remote(config.section("remote"), dry_run=dry_run, changes=changes)
    return connect(config, "lab", dry_run=dry_run, changes=changes, remote=remote), changes


@pytest.fixture
def cluster(root_config: Section) -> GanetiCluster:
    """A read-write (not dry-run) client of the lab cluster."""
    return _connect(root_config)[0]


@pytest.fixture
def instances(cluster: GanetiCluster) -> Iterator[Callable[[], str]]:
    """Hands out unique instance names and removes whatever exists of them at the end."""
    names: list[str] = []

    def new_name() -> str:
        names.append(f"cbt-{secrets.token_hex(4)}.lab.example")
        return names[-1]

    yield new_name
    existing = set(cluster.instance_names())
    for name in names:
        if name in existing:
            cluster.remove_instance(name, shutdown_timeout=0).wait(timeout=300)


def _group_nodes(cluster: GanetiCluster, group: str) -> list[str]:
    return sorted(cluster.group(group)["node_list"])


def _create(cluster: GanetiCluster, name: str, *, template: str, pnode: str, log: list[LogEntry] | None = None,
            **extra: Any) -> Any:
    disks = [] if template == "diskless" else [1024]
    job = cluster.create_instance(name, disk_template=template, disks=disks, os_type="noop", memory=128, vcpus=1,
                                  pnode=pnode, name_check=False, **extra)
    return job.wait(progress=log.append if log is not None else None)


def test_reads_and_master_discovery(cluster: GanetiCluster, lab: dict[str, Any]) -> None:
    info = cluster.info()
    assert cluster.master() == info["master"] == lab["ganeti"]["master"]
    assert "instance-create-reqv1" in cluster.features()
    assert "noop" in cluster.os_list()
    nodes = {node["name"]: node for node in cluster.nodes()}
    assert set(lab["ganeti"]["nodes"]) <= set(nodes)
    assert {group["name"] for group in cluster.groups()} >= {"A", "B"}
    assert cluster.node(lab["ganeti"]["nodes"][0])["name"] == lab["ganeti"]["nodes"][0]
    assert cluster.node_role(info["master"]) == "master"
    assert isinstance(cluster.instances(), list) and isinstance(cluster.jobs(), list)


def test_instance_lifecycle_with_job_log_lines(cluster: GanetiCluster, instances: Callable[[], str]) -> None:
    name = instances()
    node1, node2 = _group_nodes(cluster, "A")
    created: list[LogEntry] = []
    result = _create(cluster, name, template="file", pnode=node1, log=created)
    assert result.status == "success" and result.value == [node1]
    assert created, "instance create streamed no log line"
    print("\n".join(f"job {entry.job_id}: {entry.text}" for entry in created))
    assert result.end_ts is not None and result.end_ts >= (result.start_ts or 0)
    assert cluster.instance(name)["admin_state"] == "up"

    cluster.shutdown_instance(name, timeout=10).wait()
    assert cluster.instance(name)["admin_state"] == "down"
    renamed = instances()
    assert cluster.rename_instance(name, renamed, name_check=False).wait().value == renamed
    name = renamed
    cluster.startup_instance(name).wait()
    assert cluster.instance(name)["admin_state"] == "up"
    for reboot_type in ("hard", "soft", "full"):
        assert cluster.reboot_instance(name, reboot_type=reboot_type).wait().status == "success"

    modified = cluster.modify_instance(name, beparams={"maxmem": 256, "minmem": 256}).wait()
    assert ["be/maxmem", 256] in [list(change) for change in modified.value]
    assert cluster.instance(name)["beparams"]["maxmem"] == 256
    cluster.grow_disk(name, 0, 64).wait()
    assert cluster.instance(name)["disk.sizes"] == [1088]

    cluster.add_tags("instance", name, ["cbt:lifecycle"]).wait()
    assert "cbt:lifecycle" in cluster.tags("instance", name)

    moved = cluster.move_instance(name, node2, shutdown_timeout=10).wait()
    assert moved.status == "success" and cluster.instance(name)["pnode"] == node2

    removed: list[LogEntry] = []
    cluster.remove_instance(name, shutdown_timeout=10).wait(progress=removed.append)
    print("\n".join(f"job {entry.job_id}: {entry.text}" for entry in removed))
    with pytest.raises(RapiNotFoundError):
        cluster.instance(name)


@pytest.mark.parametrize("template", ["sharedfile", "diskless"])
def test_migrate_and_failover_in_a_two_node_group(
    cluster: GanetiCluster, instances: Callable[[], str], template: str
) -> None:
    name = instances()
    node1, node2 = _group_nodes(cluster, "A")
    _create(cluster, name, template=template, pnode=node1)
    migrated: list[LogEntry] = []
    cluster.migrate_instance(name, mode="live", target_node=node2).wait(progress=migrated.append)
    assert cluster.instance(name)["pnode"] == node2
    assert migrated, "migrate streamed no log line"
    cluster.failover_instance(name, target_node=node1, shutdown_timeout=5).wait()
    assert cluster.instance(name)["pnode"] == node1
    assert cluster.instance(name)["admin_state"] == "up"


def test_failed_jobs_raise_with_ganeti_classification(cluster: GanetiCluster, instances: Callable[[], str]) -> None:
    name = instances()
    node1 = _group_nodes(cluster, "A")[0]
    with pytest.raises(JobFailedError) as plain:
        _create(cluster, name, template="plain", pnode=node1)
    assert plain.value.status == "error" and plain.value.error_type == "OpPrereqError"
    assert "Disk template 'plain' is not enabled in cluster" in plain.value.message
    assert plain.value.summary == f"INSTANCE_CREATE({name})"
    with pytest.raises(JobFailedError) as unknown:
        _create(cluster, name, template="diskless", pnode="nosuchnode.lab.example")
    assert unknown.value.classification == "unknown_entity"
    assert unknown.value.message == "Node 'nosuchnode.lab.example' not known"
    with pytest.raises(RapiNotFoundError):
        cluster.instance(name)


def test_http_errors_are_typed(cluster: GanetiCluster, root_config: Section) -> None:
    with pytest.raises(RapiNotFoundError):
        cluster.instance("cbt-never-created.lab.example")
    lab_cluster = root_config.section("ganeti").section("clusters").section("lab")
    ro = Credentials(lab_cluster.str("rapi_ro_user"), lab_cluster.str("rapi_ro_password"))
    ca_file = lab_cluster.str("ca_file")
    ro_only = RapiClient(cluster.rapi.url, read_write=ro, read_only=ro, ca_file=ca_file, timeout=10)
    with pytest.raises(RapiAuthError) as forbidden:
        ro_only.submit("PUT", "/2/tags", params={"tag": ["cbt-forbidden"]})
    assert forbidden.value.status == 403
    wrong = Credentials(ro.user, "not-the-password")
    bad = RapiClient(cluster.rapi.url, read_write=wrong, read_only=wrong, ca_file=ca_file, timeout=10)
    with pytest.raises(RapiAuthError) as unauthorized:
        bad.get("/2/info")
    assert unauthorized.value.status == 401
    assert "not-the-password" not in str(unauthorized.value)


def _own_node(cluster: GanetiCluster, mine: set[str]) -> tuple[str, str] | None:
    """(node, other node of its group) where the node's primaries are all this test's, so no one is disturbed."""
    for group in ("A", "B"):
        members = _group_nodes(cluster, group)
        for node in members:
            if set(cluster.node(node)["pinst_list"]) <= mine:
                return node, next(other for other in members if other != node)
    return None


def test_node_migrate_follows_its_sub_jobs(cluster: GanetiCluster, instances: Callable[[], str]) -> None:
    names = {instances(), instances()}
    pair = _own_node(cluster, set())
    if pair is None:
        pytest.skip("every lab node runs other tests' instances")
    source, target = pair
    for name in sorted(names):
        _create(cluster, name, template="sharedfile", pnode=source)
    if set(cluster.node(source)["pinst_list"]) != names:
        pytest.skip(f"another test put an instance on {source} meanwhile")
    log: list[LogEntry] = []
    result = cluster.migrate_node(source, mode="live", target_node=target).wait(progress=log.append)
    assert len(result.sub_results) == len(names)
    assert all(sub.status == "success" for sub in result.sub_results)
    assert {entry.job_id for entry in log} >= {sub.job_id for sub in result.sub_results}
    assert {sub.summary[0] for sub in result.sub_results} == {f"INSTANCE_MIGRATE({name})" for name in names}
    assert all(cluster.instance(name)["pnode"] == target for name in names)


def test_gnt_cluster_verify_over_ssh_is_clean_with_verify_ignore(cluster: GanetiCluster) -> None:
    result = cluster.commands.cluster_verify()
    assert result.rc == 0 and result.errors == [], result.output
    assert {issue.code for issue in result.warnings} <= {"ENODESETUP"}
    strict = cluster.commands.cluster_verify(ignore=[])
    assert strict.rc == 1 and {issue.code for issue in strict.errors} == {"ENODESETUP"}


def test_dry_run_changes_nothing(root_config: Section, cluster: GanetiCluster, instances: Callable[[], str]) -> None:
    existing, planned = instances(), instances()
    node1 = _group_nodes(cluster, "A")[0]
    _create(cluster, existing, template="file", pnode=node1)
    before = cluster.instance(existing)
    last_job = max(int(job["id"]) for job in cluster.jobs())

    dry, changes = _connect(root_config, dry_run=True)
    plan = dry.create_instance(planned, disk_template="file", disks=[1024], os_type="noop", memory=128, vcpus=1,
                               iallocator="hail", name_check=False).wait()
    assert plan.value and set(plan.value) <= {node["name"] for node in cluster.nodes()}
    print(f"a create through hail would use {plan.value}")
    dry.modify_instance(existing, beparams={"maxmem": 512, "minmem": 512}).wait()
    dry.shutdown_instance(existing, timeout=5).wait()
    dry.remove_instance(existing).wait()
    assert dry.set_node_role(node1, "drained").wait().skipped
    dry.evacuate_node(node1, mode="primary-only", iallocator="hail").wait()
    dry.assign_nodes("B", [node1]).wait()
    assert cluster.node(node1)["group.uuid"] == cluster.group("A")["uuid"]

    after = cluster.instance(existing)
    assert {key: after[key] for key in ("admin_state", "pnode", "beparams", "disk.sizes", "oper_state")} == {
        key: before[key] for key in ("admin_state", "pnode", "beparams", "disk.sizes", "oper_state")}
    with pytest.raises(RapiNotFoundError):
        cluster.instance(planned)
    checked = {change.detail["job_id"] for change in changes.changes if change.detail.get("checked")}
    assert len(checked) == 6 and all(change.dry_run for change in changes.changes)
    for job in cluster.jobs(bulk=True):
        if int(job["id"]) <= last_job:
            continue
        touches_mine = any(op.get("instance_name") in (existing, planned) for op in job["ops"])
        if touches_mine or int(job["id"]) in checked:
            assert int(job["id"]) in checked and all(op.get("dry_run") for op in job["ops"]), job
