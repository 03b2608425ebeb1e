"""Resource lock keys, their global order, and taking them through the runner (file locks): journaled, in order,
never against the order, kept until the end of the run with resources.hold; lease limits and the fence's logic."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from libcluster import resources
from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.cookbook import LockArgs
from libcluster.etcd import EtcdAccess
from libcluster.locks import EtcdBackend, FileBackend, Holder, LockError, LockLostError, Locks, _Lease
from libcluster.remote import Remote
from libcluster.resources import Resource
from tests.unit.runner.runner_env import Env


def test_keys_name_the_cluster_the_kind_and_the_object() -> None:
    assert resources.cluster_lock("c1") == "ganeti/c1"
    assert resources.group_lock("c1", "g1") == "ganeti/c1/group/g1"
    assert resources.node_lock("c1", "node1.x") == "ganeti/c1/node/node1.x"
    assert resources.instance_lock("c1", "vm1.x") == "ganeti/c1/instance/vm1.x"
    assert resources.runner_lock("sre.ganeti.makevm", "vm1.x") == "cookbooks/sre.ganeti.makevm:vm1.x"
    assert resources.runner_lock("sre.dns.netbox") == "cookbooks/sre.dns.netbox"
    assert resources.custom_lock("mine") == "custom/mine"
    for key in ("ganeti/c1", "ganeti/c1/group/g1", "ganeti/c1/node/n1", "ganeti/c1/instance/vm1.x"):
        found = Resource.from_key(key)
        assert found is not None and found.key == key
    assert Resource.from_key("custom/x") is None and Resource.from_key("ganeti/c1/disk/d") is None


@pytest.mark.parametrize(("call", "message"), [
    (lambda: resources.instance_lock("c1", "a/b"), "invalid instance name 'a/b'"),
    (lambda: resources.node_lock("", "n1"), "invalid cluster name ''"),
    (lambda: resources.group_lock("c1", " g"), "invalid group name ' g'"),
    (lambda: Resource.of("disk", "c1", "d"), "unknown resource kind 'disk'"),
])
def test_names_that_would_alias_another_key_are_refused(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_the_global_order_is_cluster_groups_nodes_instances_then_names() -> None:
    wanted = resources.resources("c1", instances=["vm-b", "vm-a", "vm-b"], nodes=["n2"], node="n1", groups=["g"],
                                 whole_cluster=True)
    assert [resource.key for resource in wanted] == [
        "ganeti/c1", "ganeti/c1/group/g", "ganeti/c1/node/n1", "ganeti/c1/node/n2", "ganeti/c1/instance/vm-a",
        "ganeti/c1/instance/vm-b"]


def _locks(tmp_path: Path) -> Locks:
    return Locks(FileBackend(tmp_path / "locks"), owner="me@host [1]", dry_run=False, ttl=30, tries=1, sleep=0)


def test_a_lock_that_sorts_before_one_held_is_refused_and_a_held_one_is_not_taken_again(tmp_path: Path) -> None:
    locks = _locks(tmp_path)
    with locks.acquired(resources.instance_lock("c1", "vm-b"), concurrency=1):
        with pytest.raises(LockError, match="taking lock ganeti/c1/instance/vm-a while holding "
                                            "ganeti/c1/instance/vm-b breaks the global lock order"):
            resources.not_held(locks, resources.resources("c1", instances=["vm-a", "vm-b"]))
        with pytest.raises(LockError, match="taking lock ganeti/c1/node/n1"):
            resources.not_held(locks, resources.resources("c1", node="n1"))
        assert resources.not_held(locks, resources.resources("c1", instances=["vm-b", "vm-c"])) == [
            Resource.of("instance", "c1", "vm-c")]
    assert resources.not_held(locks, resources.resources("c1", instances=["vm-a"])) != []


def test_acquire_takes_the_locks_in_order_and_journals_them(cookbook: Callable[..., int], env: Env,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert cookbook("locking.resources", "c1", "--instance", "vm-b", "--node", "n1", "--instance", "vm-a") == 0
    assert capsys.readouterr().out.split() == ["LOCKED", "ganeti/c1/node/n1", "ganeti/c1/instance/vm-a",
                                               "ganeti/c1/instance/vm-b"]
    assert [line["key"] for line in env.lines() if line["event"] == "lock"] == [
        "ganeti/c1/node/n1", "ganeti/c1/instance/vm-a", "ganeti/c1/instance/vm-b"]
    backend = FileBackend(env.locks)
    assert backend.holders("ganeti/c1/instance/vm-a") == []


def test_a_busy_instance_stops_the_run_and_releases_what_was_taken(cookbook: Callable[..., int], env: Env,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    backend = FileBackend(env.locks)
    other = Holder("other", "alice@cumin1 [7]", 1, 30, time.time())
    assert backend.try_acquire("ganeti/c1/instance/vm-b", other) is None
    assert cookbook("locking.resources", "c1", "--node", "n1", "--instance", "vm-a", "--instance", "vm-b") == 99
    assert "unable to acquire lock ganeti/c1/instance/vm-b after 3 tries" in caplog.text
    assert backend.holders("ganeti/c1/node/n1") == [] and backend.holders("ganeti/c1/instance/vm-a") == []


def test_hold_keeps_the_locks_until_rollback_is_done(cookbook: Callable[..., int], env: Env, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    original = FileBackend.release

    def release(self: FileBackend, key: str, holder: Holder) -> None:
        print("RELEASED", key, flush=True)
        original(self, key, holder)

    monkeypatch.setattr(FileBackend, "release", release)
    target = tmp_path / "made"
    target.mkdir()
    (target / "second").mkdir()  # the second write fails: the run rolls back
    assert cookbook("locking.fenced", str(target), "--cluster", "c1", "--instance", "vm-a") == 99
    assert capsys.readouterr().out.splitlines() == [
        "CHANGED", "ROLLED BACK", "RELEASED ganeti/c1/instance/vm-a", "RELEASED cookbooks/locking.fenced"]
    assert not (target / "first").exists()
    assert FileBackend(env.locks).holders("ganeti/c1/instance/vm-a") == []


def test_leases_above_a_minute_are_refused(cookbook: Callable[..., int], env: Env,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match=r"LockArgs\.ttl must be between 1 and 60 seconds"):
        LockArgs(suffix="", concurrency=1, ttl=900)
    env.write(locks={"file_dir": str(env.locks), "ttl": 1800})
    assert cookbook("locking.exclusive") == 1
    assert "key 'locks.ttl' must be between 1 and 60 seconds" in capsys.readouterr().err
    env.write(locks={"file_dir": str(env.locks), "default_ttl": 1800})
    assert cookbook("locking.exclusive") == 1
    assert "key 'locks.default_ttl' is replaced by 'locks.ttl'" in capsys.readouterr().err
    assert not env.locks.exists(), "nothing was locked"


def test_the_fence_trips_when_no_renewal_succeeded_for_a_whole_ttl() -> None:
    backend = EtcdBackend(EtcdAccess("https://etcd.invalid:2379"), "/locks/")
    locks = Locks(backend, owner="me@host [1]", dry_run=False, ttl=30, tries=1, sleep=0)
    holder = Holder("h1", "me@host [1]", 1, 30, time.time())
    locks._held.append(("cookbooks/x", holder))
    backend._leases[holder.id] = _Lease(7, 30, time.monotonic() - 29)
    locks.check_held()
    backend._leases[holder.id] = _Lease(7, 30, time.monotonic() - 31, failure="etcd timed out")
    with pytest.raises(LockLostError, match=r"lock cookbooks/x may be lost: its lease \(30s\) was not renewed "
                                            r"for 31s \(etcd timed out\)"):
        locks.check_held()
    backend._leases[holder.id] = _Lease(7, 30, time.monotonic(), gone=True)
    with pytest.raises(LockLostError, match=r"lock cookbooks/x is lost: etcd at https://etcd\.invalid:2379 says"):
        locks.check_held()


def test_a_lost_lock_stops_remote_commands_before_they_run(tmp_path: Path) -> None:
    def lost() -> None:
        raise LockLostError("lock cookbooks/x is lost")

    cumin_config = tmp_path / "cumin.yaml"
    cumin_config.write_text(yaml.safe_dump({"transport": "clustershell", "default_backend": "direct",
                                            "clustershell": {"ssh_path": "/bin/false"}}))
    changes = ChangeLog(dry_run=False, fence=lost)
    remote = Remote(Section({"cumin_config": str(cumin_config)}, "remote", "test.yaml"), dry_run=False,
                    changes=changes)
    with pytest.raises(LockLostError):
        remote.hosts(["node1.lab.example"]).run_sync("touch /tmp/never")
    assert changes.changes == [], "nothing ran, nothing recorded"
