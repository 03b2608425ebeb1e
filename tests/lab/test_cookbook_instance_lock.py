"""reboot-vm and changedisk hold the library's instance lock (libcluster.resources.instance_lock, the key the sync,
the hooks agent and makevm use): while another process holds it in the lab's etcd, both stop before any Ganeti
job; once it is free the same reboot goes through.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from libcluster import config as config_module
from libcluster import resources
from libcluster.ganeti import GanetiCluster
from libcluster.locks import from_config
from tests.lab.cookbook_lab import (  # noqa: F401 - cluster and new_instance are fixtures
    cluster,
    last_job_id,
    new_instance,
    real_jobs_since,
    run_cookbook,
)


@pytest.fixture
def quick_config(lab_config: Path, tmp_path: Path) -> Path:
    """The lab's config, a busy lock given up after two short tries (the runner's own lock is per run: free)."""
    data = yaml.safe_load(lab_config.read_text())
    data["locks"].update(wait_tries=2, wait_sleep=0.2)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_held_instance_lock_stops_reboot_and_changedisk_before_any_job(
        cluster: GanetiCluster, new_instance: Callable[..., str], quick_config: Path) -> None:
    name = new_instance("file")
    key = resources.instance_lock("lab", name)
    holder = from_config(config_module.load(quick_config), owner=f"{__name__} [{os.getpid()}]", dry_run=False)
    marker = last_job_id(cluster)
    with holder.acquired(key, concurrency=1):
        reboot = run_cookbook(quick_config, "sre.ganeti.reboot-vm", "--type", "soft", name)
        convert = run_cookbook(quick_config, "sre.ganeti.changedisk", "--cluster", "lab", "--disk-template",
                               "sharedfile", name)
    for run in (reboot, convert):
        assert run.returncode == 99 and key in run.stderr
    assert real_jobs_since(cluster, marker, name) == []
    assert cluster.instance(name).running
    done = run_cookbook(quick_config, "sre.ganeti.reboot-vm", "--type", "soft", name)
    assert done.returncode == 0
    assert [job["summary"] for job in real_jobs_since(cluster, marker, name)] == [[f"INSTANCE_REBOOT({name})"]]
