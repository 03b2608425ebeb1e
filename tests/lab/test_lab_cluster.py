"""The lab's Ganeti cluster for real: RAPI jobs over verified TLS, RAPI auth, node groups, SSH via cumin."""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest
import requests

from cookbook_lab import cluster, topology
from cookbook_lab.common import Lab

JOB_TIMEOUT = 60


def _wait_job(ganeti: dict[str, Any], job_id: int) -> dict[str, Any]:
    """Poll a RAPI job until it is finished; return its final info."""
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline:
        response = requests.get(f"{ganeti['rapi_url']}/2/jobs/{job_id}", verify=ganeti["ca_file"], timeout=10,
                                auth=(ganeti["rapi_ro_user"], ganeti["rapi_ro_password"]))
        response.raise_for_status()
        job = response.json()
        if job["status"] in ("success", "error", "canceled"):
            return job
        time.sleep(0.3)
    pytest.fail(f"job {job_id} not finished after {JOB_TIMEOUT}s")


def _cluster_tags(ganeti: dict[str, Any]) -> list[str]:
    response = requests.get(f"{ganeti['rapi_url']}/2/tags", verify=ganeti["ca_file"], timeout=10,
                            auth=(ganeti["rapi_ro_user"], ganeti["rapi_ro_password"]))
    response.raise_for_status()
    return response.json()


def test_rapi_write_job_with_verified_tls(lab_part: Any) -> None:
    """A cluster tag is added and removed by RAPI jobs, TLS verified against the lab CA."""
    ganeti = lab_part("ganeti")
    tag = f"cookbook-lab-test-{secrets.token_hex(4)}"
    auth = (ganeti["rapi_user"], ganeti["rapi_password"])
    added = requests.put(f"{ganeti['rapi_url']}/2/tags", params={"tag": tag}, auth=auth,
                         verify=ganeti["ca_file"], timeout=10)
    assert added.status_code == 200, added.text
    assert _wait_job(ganeti, added.json())["status"] == "success"
    assert tag in _cluster_tags(ganeti)
    removed = requests.delete(f"{ganeti['rapi_url']}/2/tags", params={"tag": tag}, auth=auth,
                              verify=ganeti["ca_file"], timeout=10)
    assert removed.status_code == 200, removed.text
    assert _wait_job(ganeti, removed.json())["status"] == "success"
    assert tag not in _cluster_tags(ganeti)


def test_rapi_certificate_is_the_lab_one(lab_part: Any) -> None:
    """The certificate verifies with the lab CA only: the system trust store rejects it."""
    ganeti = lab_part("ganeti")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{ganeti['rapi_url']}/2/info", verify=requests.certs.where(), timeout=10)


def test_rapi_read_only_user_cannot_write(lab_part: Any) -> None:
    """The read-only user reads but gets 403 on a write."""
    ganeti = lab_part("ganeti")
    auth = (ganeti["rapi_ro_user"], ganeti["rapi_ro_password"])
    info = requests.get(f"{ganeti['rapi_url']}/2/info", auth=auth, verify=ganeti["ca_file"], timeout=10)
    assert info.status_code == 200
    assert info.json()["name"] == topology.CLUSTER_FQDN
    denied = requests.put(f"{ganeti['rapi_url']}/2/tags", params={"tag": "never-added"}, auth=auth,
                          verify=ganeti["ca_file"], timeout=10)
    assert denied.status_code == 403


def test_rapi_wrong_password_is_refused(lab_part: Any) -> None:
    """A wrong password gets 401."""
    ganeti = lab_part("ganeti")
    response = requests.get(f"{ganeti['rapi_url']}/2/info", auth=(ganeti["rapi_user"], "wrong-password"),
                            verify=ganeti["ca_file"], timeout=10)
    assert response.status_code == 401


def test_node_groups_hold_the_expected_nodes(lab_part: Any) -> None:
    """RAPI's groups A and B hold the nodes the topology puts there; the spare node is in none."""
    ganeti = lab_part("ganeti")
    response = requests.get(f"{ganeti['rapi_url']}/2/groups", params={"bulk": 1}, verify=ganeti["ca_file"],
                            auth=(ganeti["rapi_ro_user"], ganeti["rapi_ro_password"]), timeout=10)
    response.raise_for_status()
    groups = {group["name"]: sorted(group["node_list"]) for group in response.json()}
    for group in topology.GROUPS:
        expected = sorted(node.fqdn for node in topology.cluster_nodes() if node.group == group)
        assert set(expected) <= set(groups[group])
        assert groups[group] == ganeti["groups"][group]
    in_groups = {fqdn for members in groups.values() for fqdn in members}
    assert not in_groups & set(ganeti["spare_nodes"])


def test_cumin_reaches_every_node(lab_part: Any) -> None:
    """cumin (Python API, lab config) runs `hostname` on every cluster node and the spare node over SSH."""
    from cumin import Config, query, transport, transports
    from cumin.transports.clustershell import NullReporter

    ssh = lab_part("ssh")
    ganeti = lab_part("ganeti")
    fqdns = sorted(ganeti["nodes"] + ganeti["spare_nodes"])
    assert fqdns == sorted(node.fqdn for node in topology.NODES)
    config = Config(ssh["cumin_config"])
    hosts = query.Query(config).execute(",".join(fqdns))
    worker = transport.Transport.new(config, transports.Target(hosts))
    worker.commands = [transports.Command("hostname", timeout=30)]
    worker.handler = "sync"
    worker.success_threshold = 1.0
    worker.reporter = NullReporter
    worker.progress_bars = False
    results = worker.run()
    assert sorted(results.hosts_results) == fqdns
    for fqdn, host in results.hosts_results.items():
        assert host.return_codes == (0,), f"{fqdn}: {host.outputs}"
        assert host.outputs[0].stdout().strip() == fqdn


def test_status_contract(lab: dict[str, Any]) -> None:
    """status() gives exactly the ganeti and ssh keys the rest of the lab relies on."""
    state = cluster.status(Lab())
    assert set(state) == {"ganeti", "ssh"}
    assert set(state["ganeti"]) == {
        "cluster", "rapi_url", "rapi_user", "rapi_password", "rapi_ro_user", "rapi_ro_password", "ca_file",
        "master", "nodes", "spare_nodes", "groups", "up",
    }
    assert set(state["ssh"]) == {"config", "cumin_config", "up"}
    ganeti = state["ganeti"]
    assert ganeti["cluster"] == topology.CLUSTER
    assert ganeti["rapi_url"] == f"https://{topology.MASTER_IP}:{topology.RAPI_PORT}"
    assert set(ganeti["groups"]) >= set(topology.GROUPS)
    assert sorted(ganeti["nodes"] + ganeti["spare_nodes"]) == sorted(node.fqdn for node in topology.NODES)
    if ganeti["up"]:
        assert ganeti["master"] in ganeti["nodes"]
        assert ganeti["rapi_password"] and ganeti["rapi_ro_password"]
        assert ganeti["rapi_password"] != ganeti["rapi_ro_password"]
    assert state == {key: value for key, value in lab.items() if key in ("ganeti", "ssh")}
