"""Running instances on a chosen node, and the lab as the node tests found it, put back at the end of each test,
also when it fails: the tests that kill, reboot or fail over lab nodes mid-run use `lab_as_found`, because every
lab test after them runs on the same lab.

At teardown: `cookbook-lab up` (brings a dead or stay-down node back, restarts dead daemons and sshd, takes the
master IP off a node that is not the master), the master failed back to the one found (over SSH, not through the
cookbooks under test) and `up` again for the IP, the job queue undrained, each node drained or offline by the
test returned to service (its master candidate role given back), then every node waited for (noded and SSH). The
teardown fails, naming what is still wrong, when the lab is not as found.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from libcluster.ganeti import GanetiCluster
from tests.lab.cookbook_lab import remote

LAB = str(Path(sys.executable).parent / "cookbook-lab")


def _state(cluster: GanetiCluster) -> tuple[str, dict[str, tuple[str, bool, bool]]]:
    """The master and node -> (role, drained, offline)."""
    return cluster.master(), {n.name: (n.role, n.drained, n.offline) for n in cluster.nodes()}


def _up() -> None:
    subprocess.run([LAB, "up"], check=True, capture_output=True, timeout=600)


def restore(cluster: GanetiCluster, lab_config: Path, master: str, found: dict[str, tuple[str, bool, bool]]) -> None:
    """Put the lab back as found (see the module docstring); AssertionError naming what differs after it."""
    _up()
    run = remote(lab_config).hosts([master])
    # only a drained queue is undrained: Ganeti 3.0.2's `queue undrain` of an undrained queue retries forever
    run.run_sync(f"grep -qx {master} /var/lib/ganeti/ssconf_master_node || gnt-cluster master-failover; "
                 "if gnt-cluster queue info | grep -qx 'The drain flag is set'; then gnt-cluster queue undrain; fi",
                 is_safe=False, timeout=300)
    _up()  # the old master may have kept the master IP when it could not be asked to drop it
    for name, (_, drained, offline) in _state(cluster)[1].items():
        if offline and not found.get(name, ("", False, True))[2]:
            cluster.set_online(name)
        if drained and not found.get(name, ("", True, False))[1]:
            cluster.undrain(name)
    for name in found:
        cluster.wait_node_back(name, None, timeout=120)
    assert _state(cluster) == (master, found), "the lab is not as the test found it"


@pytest.fixture
def lab_as_found(cluster: GanetiCluster, lab_config: Path) -> Iterator[str]:
    """Yields the master found; at the end, even on failure, the lab is put back as found (restore) and
    `gnt-cluster verify` must find no error there (e.g. a candidate's SSH key missing on a node), so a test
    that leaves damage is named here, not by a later test's verify. Request it after the fixtures that remove
    the test's instances: it is torn down first, so they are removed from a repaired lab."""
    master, found = _state(cluster)
    try:
        yield master
    finally:
        restore(cluster, lab_config, master, found)
        verify = cluster.commands.cluster_verify()
        assert verify.errors == [], f"gnt-cluster verify after putting the lab back:\n{verify.output}"


@pytest.fixture
def on_node(cluster: GanetiCluster) -> Iterator[Callable[[str], str]]:
    """Creates a running sharedfile instance `nm-<random>.lab.example` on a node; removes them all at the end."""
    names: list[str] = []

    def create(node: str) -> str:
        name = f"nm-{secrets.token_hex(4)}.lab.example"
        names.append(name)
        cluster.create_instance(name, disk_template="sharedfile", disks=[1024], os_type="noop", memory=128, vcpus=1,
                                pnode=node, name_check=False, start=True).wait(timeout=300)
        return name

    yield create
    existing = set(cluster.instance_names())
    for name in names:
        if name in existing:
            cluster.remove_instance(name, shutdown_timeout=0).wait(timeout=300)
