"""changedisk on the lab: file <-> sharedfile (what Ganeti 3.0 converts among the lab's templates), recovery
after a conversion that fails inside Ganeti (fault injected in the node's file storage), an interrupt (SIGINT, from
a terminal or from chat `cancel`) while the conversion job runs, refusals, dry-run.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.lab.cookbook_interrupt import run_interrupted
from tests.lab.cookbook_lab import (  # noqa: F401 - cluster and new_instance are fixtures
    cluster,
    last_job_id,
    new_instance,
    planned_only,
    real_jobs_since,
    run_cookbook,
)
from tests.unit.chatops.conftest import Chat, chatops_section
from libcluster import config
from libcluster.chatops import settings as chatops_settings
from libcluster.chatops.argcheck import cookbook_dirs
from libcluster.chatops.core import Chatops
from libcluster.ganeti import GanetiCluster
from cookbook_lab import topology
from cookbook_lab.clusterfs import FILE_STORAGE_DIR, ClusterPaths
from cookbook_lab.common import Lab

CHANGEDISK = "sre.ganeti.changedisk"
CONVERTING = "Converting disk template from 'file' to 'sharedfile'"
"""The conversion job's own first log line: the instance is shut down and the job runs."""


def _state(cluster: GanetiCluster, name: str) -> tuple[str, str]:
    instance = cluster.instance(name)
    return instance["disk_template"], instance["status"]


def test_convert_file_to_sharedfile_and_recover_from_a_failed_conversion(
        cluster: GanetiCluster, new_instance: Callable[..., str], lab_config: Path) -> None:
    name = new_instance("file")
    done = run_cookbook(lab_config, CHANGEDISK, "--cluster", "lab", "--disk-template", "sharedfile", name)
    assert done.returncode == 0
    assert _state(cluster, name) == ("sharedfile", "running")
    assert "Converting disk template from 'file' to 'sharedfile'" in done.stderr  # the job's own log lines

    # Ganeti cannot create the instance's directory in the primary node's file storage: the job fails
    # after the instance was shut down, and the cookbook must start it again on its old template.
    pnode = topology.node(cluster.instance(name)["pnode"].split(".")[0])
    blocker = ClusterPaths.of(Lab()).node_path(pnode, f"{FILE_STORAGE_DIR}/{name}")
    blocker.write_text("not a directory: makes the conversion to file fail\n")
    try:
        failed = run_cookbook(lab_config, CHANGEDISK, "--cluster", "lab", "--disk-template", "file", name)
    finally:
        blocker.unlink()
    assert failed.returncode == 1
    assert "is not a directory" in failed.stderr
    assert f"Undo: startup instance {name} on cluster lab" in failed.stderr  # the undo of the shutdown
    assert _state(cluster, name) == ("sharedfile", "running")


def test_interrupt_during_the_conversion_job_starts_the_instance_again(
        cluster: GanetiCluster, new_instance: Callable[..., str], lab_config: Path) -> None:
    name = new_instance("file")
    done = run_interrupted(lab_config, CHANGEDISK, "--cluster", "lab", "--disk-template", "sharedfile", name,
                           reached=lambda err: CONVERTING in err)
    assert done.returncode == 97  # interrupted, rollback ran
    assert _state(cluster, name) == ("sharedfile", "running")  # Ganeti finished the job; the rollback started it
    # the undo of the shutdown: its start is queued by Ganeti behind the conversion job, and waited for
    assert f"Undo: startup instance {name} on cluster lab" in done.stderr
    assert done.stderr.count(CONVERTING) == 1, "the job's log lines are shown once, not again by the rollback"


def test_chat_cancel_during_the_conversion_job_starts_the_instance_again(
        cluster: GanetiCluster, new_instance: Callable[..., str], lab_config: Path, tmp_path: Path) -> None:
    name = new_instance("file")
    data = yaml.safe_load(lab_config.read_text())
    data.update(logs_base_dir=str(tmp_path / "logs"), audit_log=str(tmp_path / "logs" / "audit.jsonl"),
                chatops=chatops_section(tmp_path))
    data["chatops"]["roles"]["sre"]["run"].append("sre.ganeti.changedisk")
    path = tmp_path / "config.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(data))
    root = config.load(path)
    chat = Chat(Chatops(chatops_settings.load(root), path, cookbook_dirs(root)), tmp_path, path)
    try:
        reply, sink = chat.say(f"{CHANGEDISK} --cluster lab --disk-template sharedfile {name}")
        run_id = chat.run_id(reply)
        sink.wait_for(re.escape(CONVERTING), timeout=120)
        assert chat.say(f"cancel {run_id}")[0].lines == [f"[{run_id}] interrupt sent (SIGINT): it rolls back, its "
                                                         "result follows"]
        sink.wait_for(rf"^\[{run_id}\] INTERRUPTED \(rollback run\): .*interrupted by alice", timeout=300)
    finally:
        chat.core.close(grace=300)
    assert _state(cluster, name) == ("sharedfile", "running")
    assert any(f"Undo: startup instance {name} on cluster lab" in line for line in sink.lines)
    [record] = chat.records()
    assert (record["cookbook"], record["origin"], record["exit_code"]) == (CHANGEDISK, "chat", 97)


def test_dry_run_changes_nothing_and_prints_the_plan(cluster: GanetiCluster, new_instance: Callable[..., str],
                                                     lab_config: Path) -> None:
    name = new_instance("file")
    marker = last_job_id(cluster)
    done = run_cookbook(lab_config, CHANGEDISK, "--cluster", "lab", "--disk-template", "sharedfile", name,
                        dry_run=True)
    assert done.returncode == 0
    assert f"Would convert {name} to sharedfile" in done.stderr
    assert "disk template file -> sharedfile" in done.stdout
    assert _state(cluster, name) == ("file", "running")
    assert real_jobs_since(cluster, marker, name) == []
    assert planned_only(done) and [c["action"] for c in done.audit["changes"]] == ["instance-shutdown",
                                                                                   "instance-modify"]


REFUSALS = [
    ("file", "already has the disk template file: nothing to do"),
    ("plain", "disk template plain is not enabled on the cluster (enabled: diskless, file, sharedfile)"),
    ("diskless", "Ganeti cannot convert an instance to the diskless template"),
]


def test_refused_conversions_change_nothing(cluster: GanetiCluster, new_instance: Callable[..., str],
                                            lab_config: Path) -> None:
    name = new_instance("file")
    marker = last_job_id(cluster)
    for template, message in REFUSALS:
        done = run_cookbook(lab_config, CHANGEDISK, "--cluster", "lab", "--disk-template", template, name)
        assert done.returncode == 94 and message in done.stderr, template
    assert _state(cluster, name) == ("file", "running")
    assert real_jobs_since(cluster, marker, name) == []
    diskless = new_instance("diskless")
    done = run_cookbook(lab_config, CHANGEDISK, "--cluster", "lab", "--disk-template", "file", diskless)
    assert done.returncode == 94 and "cannot convert an instance away from the diskless template" in done.stderr
    assert _state(cluster, diskless) == ("diskless", "running")


def test_unknown_instance_and_unknown_cluster(lab_config: Path, cluster: GanetiCluster) -> None:
    done = run_cookbook(lab_config, CHANGEDISK, "--cluster", "lab", "--disk-template", "file", "nope.lab.example")
    assert done.returncode == 94 and "no instance nope.lab.example in cluster lab" in done.stderr
    done = run_cookbook(lab_config, CHANGEDISK, "--cluster", "nope", "--disk-template", "file", "x.lab.example")
    assert done.returncode == 94 and "unknown Ganeti cluster 'nope'" in done.stderr
