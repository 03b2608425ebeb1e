"""reinstall-vm on the lab: the FQDN repeated wrong (--confirm-fqdn) changes nothing, -y alone is no confirmation
without a terminal, the dry-run sends nothing (Ganeti has no dry-run for a reinstall); with the right FQDN one
Ganeti job shuts the instance down, reinstalls it and starts it, and it runs afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cookbook_lab import topology
from cookbook_lab.clusterfs import ClusterPaths
from cookbook_lab.common import Lab
from libcluster.ganeti import GanetiCluster
from tests.lab.cookbook_lab import (  # noqa: F401 - cluster and new_instance are fixtures
    cluster,
    last_job_id,
    new_instance,
    planned_only,
    real_jobs_since,
    run_cookbook,
    typed_at_a_terminal,
)
from tests.lab.test_cookbook_reboot_vm import _with_pool_commands

REINSTALL = "sre.ganeti.reinstall-vm"


def test_reinstall_needs_the_fqdn_repeated(cluster: GanetiCluster, new_instance: Callable[..., str],
                                           lab_config: Path) -> None:
    name = new_instance("sharedfile")
    marker = last_job_id(cluster)
    wrong = run_cookbook(lab_config, REINSTALL, "--cluster", "lab", "--confirm-fqdn", "other.lab.example", name)
    assert wrong.returncode == 99 and f"--confirm-fqdn other.lab.example is not {name}: nothing done" in wrong.stderr
    only_y = run_cookbook(lab_config, REINSTALL, "--cluster", "lab", name)
    assert only_y.returncode == 99
    assert f"repeat it with --confirm-fqdn {name} (-y does not answer this)" in only_y.stderr
    dry = run_cookbook(lab_config, REINSTALL, "--cluster", "lab", "--confirm-fqdn", name, name, dry_run=True)
    assert dry.returncode == 0 and planned_only(dry)
    assert real_jobs_since(cluster, marker, name) == []
    done = run_cookbook(lab_config, REINSTALL, "--cluster", "lab", "-t", "T14003", "--os", "noop",
                        "--confirm-fqdn", name, name)
    assert done.returncode == 0
    (job,) = real_jobs_since(cluster, marker, name)
    assert job["summary"] == [f"INSTANCE_SHUTDOWN({name})", f"INSTANCE_REINSTALL({name})",
                              f"INSTANCE_STARTUP({name})"] and job["status"] == "success"
    assert cluster.instance(name).running


def test_unknown_os_or_instance_is_refused(cluster: GanetiCluster, new_instance: Callable[..., str],
                                           lab_config: Path) -> None:
    name, diskless = new_instance("sharedfile"), new_instance("diskless")
    marker = last_job_id(cluster)
    no_disks = run_cookbook(lab_config, REINSTALL, "--cluster", "lab", "--confirm-fqdn", diskless, diskless)
    assert no_disks.returncode == 94 and f"{diskless} has no disks: Ganeti cannot reinstall it" in no_disks.stderr
    assert real_jobs_since(cluster, marker, diskless) == [] and cluster.instance(diskless).running
    bad_os = run_cookbook(lab_config, REINSTALL, "--cluster", "lab", "--os", "nosuch", "--confirm-fqdn", name, name)
    assert bad_os.returncode == 94 and "OS 'nosuch' is not offered by cluster lab (offered: noop)" in bad_os.stderr
    no_vm = run_cookbook(lab_config, REINSTALL, "--cluster", "lab", "nosuch-vm.lab.example")
    assert no_vm.returncode == 94 and "no instance nosuch-vm.lab.example in cluster lab" in no_vm.stderr
    assert real_jobs_since(cluster, marker, name) == [] and cluster.instance(name).running


def test_the_fqdn_typed_wrong_at_a_terminal_changes_nothing(cluster: GanetiCluster, new_instance: Callable[..., str],
                                                            lab_config: Path) -> None:
    name = new_instance("sharedfile")
    marker = last_job_id(cluster)
    code, shown = typed_at_a_terminal(lab_config, [REINSTALL, "--cluster", "lab", name], name.replace("t-", "x-"))
    assert code == 99 and f"Type the FQDN of the VM ({name}) to confirm" in shown and "nothing done" in shown
    assert "confirmed by -y" not in shown.split("Type the FQDN")[1]
    assert real_jobs_since(cluster, marker, name) == [] and cluster.instance(name).running


def test_reinstall_depools_and_pools_the_vm(cluster: GanetiCluster, new_instance: Callable[..., str],
                                            lab_config: Path, tmp_path: Path) -> None:
    name = new_instance("sharedfile", prefix="guest")  # the lab's SSH sends guest-* to the spare node's sshd
    log = f"/root/pool-{name}.log"
    on_guest = ClusterPaths.of(Lab()).node_path(topology.spare_nodes()[0], log)
    config = _with_pool_commands(lab_config, tmp_path, f"echo depooled >> {log}", f"echo pooled >> {log}")
    marker = last_job_id(cluster)
    try:
        done = run_cookbook(config, REINSTALL, "--cluster", "lab", "--confirm-fqdn", name, name)
        assert done.returncode == 0 and on_guest.read_text() == "depooled\npooled\n"
    finally:
        on_guest.unlink(missing_ok=True)
    assert [job["status"] for job in real_jobs_since(cluster, marker, name)] == ["success"]
