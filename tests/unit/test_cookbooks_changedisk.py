"""changedisk: refusals before any change, the shutdown/convert/start order, rollback after a failure or an
interrupt (through the runner's own run-then-rollback code), dry-run."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from libcluster.cookbook import EXIT_INTERRUPTED, EXIT_ROLLBACK_FAILED
from libcluster.errors import LibclusterError
from libcluster.ganeti import JobFailedError
from libcluster.resources import instance_lock
from libcluster.testing import FakeCluster, FakeCtx, interrupt_the_wait_for, load_config, load_cookbook, run_runner

TREE = Path(__file__).resolve().parents[2]
"""This checkout: the folder holding cookbooks/."""

NAME = "vm1.lab.example"
CHANGEDISK = "sre.ganeti.changedisk"


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    """What the cookbook logs at INFO (its rollback report) is what the tests read."""
    caplog.set_level(logging.INFO)


@pytest.fixture
def changedisk() -> Any:
    """The cookbook module."""
    return load_cookbook(TREE, "sre.ganeti.changedisk")


def _args(changedisk: Any, *argv: str) -> argparse.Namespace:
    return changedisk.ChangeDisk(None).argument_parser().parse_args(["--cluster", "lab", *argv, NAME])


def _runner(changedisk: Any, tmp_path: Path, cluster: FakeCluster, *argv: str, **ctx: Any) -> tuple[Any, FakeCtx]:
    fake = FakeCtx(load_config(tmp_path), clusters={"lab": cluster}, dry_run=cluster.dry_run, **ctx)
    return changedisk.ChangeDisk(fake).get_runner(_args(changedisk, *argv)), fake


@pytest.mark.parametrize(("current", "target", "enabled", "secondary", "reason"), [
    ("file", "file", ["file"], None, "already has the disk template file"),
    ("file", "plain", ["file", "sharedfile"], None, "not enabled on the cluster (enabled: file, sharedfile)"),
    ("diskless", "file", ["diskless", "file"], None, "cannot convert an instance away from the diskless"),
    ("file", "diskless", ["diskless", "file"], None, "cannot convert an instance to the diskless"),
    ("plain", "drbd", ["plain", "drbd"], None, "needs --secondary-node"),
    ("file", "sharedfile", ["file", "sharedfile"], "n2", "only applies to drbd, not to sharedfile"),
    ("plain", "drbd", ["plain", "drbd"], "n1", "is the instance's primary node"),
])
def test_conversions_ganeti_would_refuse_are_refused_first(changedisk: Any, current: str, target: str,
                                                           enabled: list[str], secondary: str | None,
                                                           reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        changedisk.check_conversion(current, target, enabled, secondary, "n1")


def test_a_valid_drbd_conversion_passes(changedisk: Any) -> None:
    changedisk.check_conversion("plain", "drbd", ["plain", "drbd"], "n2", "n1")


def test_unknown_instance_and_unknown_secondary_are_clear_errors(changedisk: Any, tmp_path: Path) -> None:
    cluster = FakeCluster()
    with pytest.raises(LibclusterError, match=f"no instance {NAME} in cluster lab"):
        _runner(changedisk, tmp_path, cluster, "--disk-template", "sharedfile")
    cluster.add_instance(NAME, "plain")
    with pytest.raises(LibclusterError, match=r"no node nope\.example in cluster lab"):
        _runner(changedisk, tmp_path, cluster, "--disk-template", "drbd", "--secondary-node", "nope.example")
    assert cluster.calls == []


def test_conversion_shuts_down_converts_starts_and_checks(changedisk: Any, tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.add_instance(NAME, "plain")
    runner, ctx = _runner(changedisk, tmp_path, cluster, "--disk-template", "drbd", "--secondary-node",
                          "node2.example", "--shutdown-timeout", "30")
    assert runner.run() == 0
    assert [call[0] for call in cluster.calls] == ["shutdown", "modify", "startup"]
    assert cluster.calls[0][2] == {"timeout": 30}
    assert cluster.calls[1][2] == {"disk_template": "drbd", "remote_node": "node2.example"}
    assert cluster.instance(NAME)["disk_template"] == "drbd" and cluster.instance(NAME)["status"] == "running"
    assert ctx.locks.taken == [instance_lock("lab", NAME)] and len(ctx.confirmations) == 1
    assert "plain -> drbd" in runner.runtime_description


def test_a_failed_conversion_restarts_the_instance_on_its_old_template(changedisk: Any, tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    cluster = FakeCluster()
    cluster.add_instance(NAME, "file")
    cluster.errors["modify"] = JobFailedError(7, status="error", error_type="OpExecError", message="disk copy failed",
                                              classification=None, summary="INSTANCE_SET_PARAMS")
    runner, _ = _runner(changedisk, tmp_path, cluster, "--disk-template", "sharedfile")
    assert run_runner(runner, runner.ctx).exit_code == 1
    assert [call[0] for call in cluster.calls] == ["shutdown", "modify", "startup"]
    state = cluster.instance(NAME)
    assert (state["disk_template"], state["status"]) == ("file", "running")
    assert f"Undoing ganeti instance-startup {NAME}" in caplog.text, "the undo of the shutdown started it again"


@pytest.mark.parametrize(("write", "calls", "template"), [
    ("shutdown", ["shutdown", "startup"], "file"),
    ("modify", ["shutdown", "modify", "startup"], "sharedfile"),
    # the start's own undo stops it, then the shutdown's starts it again: each change is undone, newest first
    ("startup", ["shutdown", "modify", "startup", "shutdown", "startup"], "sharedfile"),
])
def test_an_interrupt_between_shutdown_and_start_starts_the_instance_again(
        changedisk: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, write: str, calls: list[str],
        template: str) -> None:
    cluster = FakeCluster()
    cluster.add_instance(NAME, "file")
    interrupt_the_wait_for(cluster, write)
    runner, _ = _runner(changedisk, tmp_path, cluster, "--disk-template", "sharedfile")
    outcome = run_runner(runner, runner.ctx)
    assert (outcome.exit_code, outcome.interrupted) == (EXIT_INTERRUPTED, True)
    assert [call[0] for call in cluster.calls] == calls
    state = cluster.instance(NAME)
    assert (state["disk_template"], state["status"]) == (template, "running")


def test_an_interrupted_conversion_of_a_stopped_instance_leaves_it_stopped(changedisk: Any, tmp_path: Path,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    cluster = FakeCluster()
    cluster.add_instance(NAME, "file", up=False)
    interrupt_the_wait_for(cluster, "modify")
    runner, _ = _runner(changedisk, tmp_path, cluster, "--disk-template", "sharedfile")
    assert run_runner(runner, runner.ctx).exit_code == EXIT_INTERRUPTED
    assert [call[0] for call in cluster.calls] == ["modify"]
    assert cluster.instance(NAME)["status"] == "ADMIN_down", "nothing to start: this run did not shut it down"


def test_the_instance_lock_is_held_until_the_rollback_ends(changedisk: Any, tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.add_instance(NAME, "file")
    interrupt_the_wait_for(cluster, "modify")
    runner, ctx = _runner(changedisk, tmp_path, cluster, "--disk-template", "sharedfile")
    events = ctx.locks.events
    undo = cluster.undo
    cluster.undo = lambda action, args: (events.append((action, args["name"])), undo(action, args))[1]
    assert run_runner(runner, ctx).exit_code == EXIT_INTERRUPTED
    key = instance_lock("lab", NAME)
    assert events == [("take", key), ("instance-startup", NAME), ("release", key)]


def test_a_start_that_fails_in_the_rollback_says_the_instance_is_left_down(changedisk: Any, tmp_path: Path,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    cluster = FakeCluster()
    cluster.add_instance(NAME, "file")
    interrupt_the_wait_for(cluster, "modify")
    cluster.errors["startup"] = JobFailedError(8, status="error", error_type="OpExecError", message="no memory",
                                               classification=None, summary="INSTANCE_STARTUP")
    runner, _ = _runner(changedisk, tmp_path, cluster, "--disk-template", "sharedfile")
    assert run_runner(runner, runner.ctx).exit_code == EXIT_ROLLBACK_FAILED
    assert f"left behind: instance {NAME} (id 1): JobFailedError" in caplog.text, "named, with its shutdown job"


def test_a_stopped_instance_is_converted_and_left_stopped(changedisk: Any, tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.add_instance(NAME, "file", up=False)
    runner, _ = _runner(changedisk, tmp_path, cluster, "--disk-template", "sharedfile")
    assert runner.run() == 0
    assert [call[0] for call in cluster.calls] == ["modify"]
    assert cluster.instance(NAME)["admin_state"] == "down"


def test_operator_abort_changes_nothing(changedisk: Any, tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.add_instance(NAME, "file")
    runner, _ = _runner(changedisk, tmp_path, cluster, "--disk-template", "sharedfile", abort=True)
    with pytest.raises(LibclusterError, match="aborted"):
        runner.run()
    assert cluster.calls == []


def test_dry_run_checks_the_shutdown_and_lists_the_conversion(changedisk: Any, tmp_path: Path) -> None:
    cluster = FakeCluster(dry_run=True)
    cluster.add_instance(NAME, "file")
    runner, ctx = _runner(changedisk, tmp_path, cluster, "--disk-template", "sharedfile")
    assert runner.run() == 0
    assert [call[0] for call in cluster.calls] == ["shutdown"]
    planned = [(change.action, change.target, change.dry_run) for change in ctx.changes.changes]
    assert planned == [("instance-modify", NAME, True)]
    assert cluster.instance(NAME)["disk_template"] == "file" and cluster.instance(NAME)["status"] == "running"
