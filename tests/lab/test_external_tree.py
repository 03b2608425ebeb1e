"""A cookbook tree outside this repository, written only against the library's documented helpers
(libcluster.arguments, libcluster.resources, libcluster.ganeti.waits), runs on the lab through the real runner:
its --cluster is checked against the configuration, dry-run sends no job, a real run restarts the instance
under its instance lock; and the tree's own unit test on libcluster.testing passes under pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from libcluster.ganeti import GanetiCluster
from tests.lab.cookbook_lab import (  # noqa: F401 - cluster and new_instance are fixtures
    cluster,
    last_job_id,
    new_instance,
    planned_only,
    real_jobs_since,
    run_cookbook,
)

COOKBOOK = '''
"""Restart a VM: shut it down and start it again, under its instance lock."""

import argparse

from libcluster import resources
from libcluster.arguments import add_location_args, cluster_settings, fqdn_argument
from libcluster.cookbook import CookbookBase, CookbookRunnerBase
from libcluster.ganeti.waits import wait_running


class RestartVM(CookbookBase):
    """Restart a VM (shutdown, startup, wait until it runs)."""

    def argument_parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(description=self.__doc__)
        add_location_args(parser, group=False)
        parser.add_argument("fqdn", type=fqdn_argument)
        return parser

    def get_runner(self, args: argparse.Namespace) -> CookbookRunnerBase:
        cluster_settings(self.ctx.config, args)
        return Runner(self.ctx, self.ctx.ganeti(args.cluster), args.fqdn)


class Runner(CookbookRunnerBase):
    def __init__(self, ctx, cluster, fqdn):
        self.ctx, self.cluster, self.fqdn = ctx, cluster, fqdn

    @property
    def runtime_description(self) -> str:
        return f"for {self.fqdn}"

    def run(self) -> int:
        self.ctx.confirm(f"Restart {self.fqdn}?")
        with resources.acquire(self.ctx, self.cluster.name, instances=[self.fqdn]):
            self.cluster.shutdown_instance(self.fqdn, timeout=0).wait()
            self.cluster.startup_instance(self.fqdn).wait()
            if not self.ctx.dry_run:
                wait_running(self.cluster, self.fqdn, 120)
        return 0
'''

UNIT_TEST = '''
from pathlib import Path

from libcluster.testing import FakeCluster, FakeCtx, load_config, load_cookbook

TREE = Path(__file__).resolve().parents[1]


def test_restart(tmp_path):
    cluster = FakeCluster()
    cluster.add_instance("vm1.lab.example")
    ctx = FakeCtx(load_config(tmp_path), clusters={"lab": cluster})
    cookbook = load_cookbook(TREE, "team.restart-vm").RestartVM(ctx)
    runner = cookbook.get_runner(cookbook.argument_parser().parse_args(["--cluster", "lab", "vm1.lab.example"]))
    assert runner.run() == 0
    assert [call[0] for call in cluster.calls] == ["shutdown", "startup"]
    assert cluster.instance("vm1.lab.example").running
'''


@pytest.fixture
def tree(tmp_path: Path, lab_config: Path) -> tuple[Path, Path]:
    """The team's tree (a cookbook and its unit test) and a copy of the lab config that runs only that tree."""
    root = tmp_path / "team-tree"
    (root / "cookbooks" / "team").mkdir(parents=True)
    (root / "cookbooks" / "team" / "restart-vm.py").write_text(textwrap.dedent(COOKBOOK))
    (root / "tests").mkdir()
    (root / "tests" / "test_restart_vm.py").write_text(textwrap.dedent(UNIT_TEST))
    data = yaml.safe_load(lab_config.read_text())
    data["cookbooks_base_dirs"] = [str(root)]
    config = tmp_path / "config.yaml"
    config.touch(mode=0o600)
    config.write_text(yaml.safe_dump(data))
    return root, config


def test_a_tree_outside_the_repository_runs_on_the_lab_with_the_library_helpers(
        cluster: GanetiCluster, new_instance: Callable[..., str], tree: tuple[Path, Path]) -> None:
    root, config = tree
    name = new_instance("diskless")
    marker = last_job_id(cluster)
    unknown = run_cookbook(config, "team.restart-vm", "--cluster", "nowhere", name)
    assert unknown.returncode == 94 and "nowhere" in unknown.stderr
    planned = run_cookbook(config, "team.restart-vm", "--cluster", "lab", name, dry_run=True)
    assert planned.returncode == 0 and planned_only(planned)
    assert real_jobs_since(cluster, marker, name) == []
    done = run_cookbook(config, "team.restart-vm", "--cluster", "lab", name)
    assert done.returncode == 0
    assert [job["summary"] for job in real_jobs_since(cluster, marker, name)] == [
        [f"INSTANCE_SHUTDOWN({name})"], [f"INSTANCE_STARTUP({name})"]]
    assert cluster.instance(name).running
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    unit = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert unit.returncode == 0 and "1 passed" in unit.stdout, unit.stdout + unit.stderr
