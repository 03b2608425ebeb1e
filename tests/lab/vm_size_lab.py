"""What the lab tests of resize-vm and disk share: a test VM in Ganeti AND NetBox (removed after), the cookbook run
on this repository's tree, what Ganeti and NetBox say of its sizes, and "nothing changed" probes."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from cookbook_lab import topology
from cookbook_lab.clusterfs import ClusterPaths
from cookbook_lab.common import Lab
from libcluster.ganeti import GanetiCluster
from libcluster.netbox import NetBox
from tests.lab.cookbook_lab import (
    Run,
    last_job_id,
    netbox,
    netbox_changes,
    real_jobs_since,
    remove_test_instance,
    run_cookbook,
)

REPO = Path(__file__).resolve().parents[2]
GROUP = "A"


@dataclass
class SizedVM:
    """A file-template instance on the first node of group A (128 MiB, 1 vCPU, one 1 GiB disk) and its NetBox VM."""

    name: str
    cluster: GanetiCluster
    netbox: NetBox
    config: Path
    vm_id: int

    def run(self, cookbook: str, *args: str, dry_run: bool = False) -> Run:
        """`cookbook [-d] -y sre.ganeti.COOKBOOK --cluster lab ARGS` on this tree."""
        return run_cookbook(self.config, f"sre.ganeti.{cookbook}", "--cluster", topology.CLUSTER, *args,
                            dry_run=dry_run)

    def ganeti_sizes(self) -> dict[str, Any]:
        """What Ganeti says: vcpus, memory (maxmem, minmem), disk sizes, state."""
        instance = self.cluster.instance(self.name)
        own = instance.raw.get("custom_beparams") or {}
        return {"vcpus": instance.vcpus, "maxmem": own.get("maxmem"), "minmem": own.get("minmem"),
                "disks": list(instance.disk_sizes), "status": instance.status}

    def netbox_sizes(self) -> dict[str, Any]:
        """What NetBox says of the VM: vcpus, memory, disk (MB)."""
        vm = self.netbox.get("vm", id=self.vm_id)
        return {"vcpus": int(float(vm["vcpus"])), "memory": vm["memory"], "disk": vm["disk"]}

    def netbox_change_count(self) -> int:
        """Entries of NetBox's change log about the VM."""
        return netbox_changes(self.config, "virtualization.virtualmachine", self.vm_id)

    @contextmanager
    def unchanged(self) -> Iterator[None]:
        """Asserts that the body changed nothing of the VM: no real Ganeti job about it, same sizes in Ganeti and
        NetBox, no NetBox change-log entry."""
        marker, ganeti_before = last_job_id(self.cluster), self.ganeti_sizes()
        netbox_before, changes_before = self.netbox_sizes(), self.netbox_change_count()
        yield
        assert real_jobs_since(self.cluster, marker, self.name) == []
        assert self.ganeti_sizes() == ganeti_before
        assert self.netbox_sizes() == netbox_before and self.netbox_change_count() == changes_before

    def with_netbox_token(self, token: str) -> SizedVM:
        """The same VM, run with a configuration whose NetBox token is token (e.g. one NetBox refuses)."""
        data = yaml.safe_load(self.config.read_text())
        data["netbox"]["token"] = token
        path = self.config.with_name("config-token.yaml")
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(data))
        return dataclasses.replace(self, config=path)

    def disk_file(self, index: int = 0) -> Path:
        """The file of disk index on the primary node (the file template keeps disks as files)."""
        node = self.cluster.instance(self.name).primary_node.split(".")[0]
        directory = ClusterPaths.of(Lab()).node_path(topology.node(node), f"/srv/ganeti/file-storage/{self.name}")
        return next(directory.glob(f"*.file.disk{index}"))


def config_for_this_tree(lab_config: Path, tmp_path: Path) -> Path:
    """A copy of the lab configuration (mode 0600) whose cookbook tree is this repository's."""
    data = yaml.safe_load(lab_config.read_text())
    data["cookbooks_base_dirs"] = [str(REPO)]
    path = tmp_path / "config.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(name="sized_vm")
def sized_vm_fixture(cluster: GanetiCluster, lab_config: Path, tmp_path: Path) -> Iterator[Callable[[], SizedVM]]:
    """Makes test VMs (instance `vs-<random>.lab.example` and its NetBox VM in cluster A) and removes them after."""
    nb = netbox(lab_config)
    config = config_for_this_tree(lab_config, tmp_path)
    made: list[str] = []

    def make() -> SizedVM:
        name = f"vs-{secrets.token_hex(4)}.lab.example"
        made.append(name)
        pnode = sorted(cluster.group(GROUP).nodes)[0]
        cluster.create_instance(name, disk_template="file", disks=[1024], os_type="noop", memory=128, vcpus=1,
                                pnode=pnode, name_check=False).wait()
        group = nb.get("cluster-group", name=topology.CLUSTER)
        netbox_cluster = nb.get("cluster", name=GROUP, group_id=group["id"])
        vm = nb.create("vm", [{"name": name, "cluster": netbox_cluster["id"], "status": "active", "vcpus": 1,
                               "memory": 128, "disk": 1024}])[0]
        return SizedVM(name, cluster, nb, config, int(vm["id"]))

    yield make
    for name in made:
        remove_test_instance(cluster, nb, name)

