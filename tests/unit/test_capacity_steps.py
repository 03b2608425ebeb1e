"""The pure steps group_capacity is made of, one by one, on RAPI-shaped node, group and instance dicts."""

from __future__ import annotations

from typing import Any

from libcluster import capacity


def node(name: str, *, mfree: int = 0, dfree: int = 0, group: str = "g1", **fields: Any) -> dict[str, Any]:
    """A `GET /2/nodes?bulk=1` entry with the fields capacity reads."""
    return {"name": name, "mfree": mfree, "dfree": dfree, "group.uuid": group, "offline": False, "drained": False,
            "vm_capable": True, **fields}


def inst(name: str, pnode: str, *, memory: int, template: str = "drbd", snodes: tuple[str, ...] = (),
         state: str = "up", vcpus: int = 1) -> dict[str, Any]:
    """A `GET /2/instances?bulk=1` entry with the fields capacity reads."""
    return {"name": name, "pnode": pnode, "snodes": list(snodes), "disk_template": template, "admin_state": state,
            "beparams": {"maxmem": memory, "vcpus": vcpus}}


POLICY = {"uuid": "g1", "name": "default", "ipolicy": {"vcpu-ratio": 4, "minmax": [
    {"max": {"memory-size": 2048, "disk-size": 10000}}, {"max": {"memory-size": 4096}}]}}


def test_node_total_sums_a_field_and_counts_a_missing_one_as_zero() -> None:
    assert capacity.node_total([node("a", mtotal=100), node("b", mtotal=None), node("c")], "mtotal") == 100
    assert capacity.node_total([], "mfree") == 0


def test_vcpu_ratio_limit_is_the_policys_or_none() -> None:
    assert capacity.vcpu_ratio_limit(POLICY) == 4.0
    assert capacity.vcpu_ratio_limit({"ipolicy": {}}) is None and capacity.vcpu_ratio_limit({}) is None


def test_largest_vm_is_the_freest_node_capped_by_the_policy() -> None:
    nodes = [node("a", mfree=8000, dfree=500), node("b", mfree=8000, dfree=900), node("c", mfree=100, dfree=99999)]
    assert capacity.largest_vm(nodes, POLICY) == (4096, 900)  # most memory, then disk; memory capped at 4096
    assert capacity.largest_vm(nodes, {}) == (8000, 900)  # no policy: no cap
    assert capacity.largest_vm([], POLICY) == (0, 0)


def test_failover_candidates_by_disk_template() -> None:
    free = {"a": 100, "b": 300, "c": 200}
    assert capacity.failover_candidates(inst("i", "x", memory=1, snodes=("c", "gone")), free) == ["c"]
    assert capacity.failover_candidates(inst("i", "x", memory=1, template="sharedfile"), free) == ["b", "c", "a"]
    assert capacity.failover_candidates(inst("i", "x", memory=1, template="plain"), free) is None


def test_node_loss_failures_name_the_nodes_whose_instances_do_not_fit_elsewhere() -> None:
    members = [node("a", mfree=1000), node("b", mfree=3000), node("c", mfree=0, drained=True)]
    hosted = [inst("big", "b", memory=2000, snodes=("a",)),  # a has 1000 free: b's loss cannot be absorbed
              inst("small", "a", memory=500, snodes=("b",)),  # b takes it
              inst("local", "a", memory=9000, template="plain"),  # cannot move whatever the capacity: not counted
              inst("stopped", "a", memory=9000, snodes=("b",), state="down")]  # not running: nothing to restart
    assert capacity.node_loss_failures(members, hosted) == ["b"]


def test_one_group_puts_the_steps_together() -> None:
    members = [node("a", mfree=1000, dfree=10, mtotal=4000, dtotal=20, ctotal=4),
               node("b", mfree=3000, dfree=30, mtotal=4000, dtotal=40, ctotal=4, offline=True)]
    hosted = [inst("one", "a", memory=1500, snodes=("b",), vcpus=3)]
    cap = capacity.one_group("lab", POLICY, members, hosted)
    assert (cap.cluster, cap.group, cap.nodes, cap.instances) == ("lab", "default", 2, 1)
    assert (cap.memory_total, cap.memory_free, cap.disk_total, cap.disk_free) == (8000, 1000, 60, 10)  # b offline
    assert (cap.cores, cap.memory_allocated, cap.vcpus_allocated, cap.vcpu_ratio_limit) == (8, 1500, 3, 4.0)
    assert cap.node_loss_failures == ["a"] and cap.survives_node_loss is False
    assert (cap.largest_vm_memory, cap.largest_vm_disk) == (1000, 10)
