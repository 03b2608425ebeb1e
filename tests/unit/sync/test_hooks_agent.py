"""libcluster.hooks.agent: one sync run per changed instance through the runner, events deleted when done,
kept while a cookbook creates the instance or the run fails, dropped after max_attempts; dry-run deletes none.
Events are checked against the cluster's domain and Ganeti: bad ones are logged and deleted, and --delete is
given only for an instance Ganeti does not have.

The store is an in-memory stand-in of EventStore; the runner is stood in for by a recorder of its calls;
Ganeti by a set of instance names; locks are real file locks, so "a cookbook is creating it" is a real lock
held by the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import threading

import pytest
import yaml

from libcluster import config as config_module
from libcluster import resources
from libcluster.hooks import agent as agent_module
from libcluster.hooks.agent import Agent, session_for
from libcluster.errors import ConfigError
from libcluster.ganeti.errors import GanetiError
from libcluster.hooks.events import Batch, Event, HookSettings


class Store:
    """Pending events (and bad keys with their reason) in memory under prefix /p/, deletions and reads recorded."""

    prefix = "/p/"
    url = "https://etcd.test:2379"

    def __init__(self, events: list[Event], bad: list[tuple[str, str]] | None = None) -> None:
        self.events = list(events)
        self.bad = list(bad or [])
        self.deleted: list[str] = []
        self.starts: list[str | None] = []

    def read(self, start: str | None = None) -> Batch:
        self.starts.append(start)
        return Batch(list(self.events), [(key, why) for key, why in self.bad if key not in self.deleted])

    def delete(self, key: str) -> None:
        self.deleted.append(key)
        self.events = [event for event in self.events if event.key != key]


def event(key: str, instance: str, phase: str = "post", cluster: str = "lab", hook: str = "instance-add",
          new_name: str = "") -> Event:
    return Event(key=key, cluster=cluster, hook=hook, phase=phase, op="OP", instance=instance, new_name=new_name,
                 node="node1.lab.example")


@pytest.fixture
def root(tmp_path: Path) -> config_module.Section:
    data = {"cookbooks_base_dirs": [str(tmp_path)], "logs_base_dir": str(tmp_path / "logs"),
            "audit_log": str(tmp_path / "audit.jsonl"), "locks": {"file_dir": str(tmp_path / "locks")},
            "hooks": {"etcd_url": "http://127.0.0.1:1", "max_attempts": 2},
            "ganeti": {"clusters": {"lab": {"domain": "lab.example"}, "prod": {"domain": "prod.example"}}}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return config_module.load(path)


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Calls of the runner: cookbook, args, origin; exit code from the EXIT dict (default 0)."""
    calls: list[dict[str, Any]] = []

    def run(session: Any, name: str, argv: list[str]) -> int:
        calls.append({"name": name, "argv": argv, "origin": dict(session.origin), "dry_run": session.dry_run})
        return EXIT.get(argv[3], 0)

    monkeypatch.setattr(agent_module.execute, "run", run)
    EXIT.clear()
    return calls


EXIT: dict[str, int] = {}


LIVE = {"a.lab.example", "t-1.lab.example", "new.lab.example", "bad.lab.example", "b.lab.example"}
"""Instances the stand-in Ganeti has."""


def has_instance(cluster: str, name: str) -> bool:
    return cluster == "lab" and name in LIVE


def make(root: config_module.Section, store: Store, dry_run: bool = False, **kwargs: Any) -> Agent:
    return Agent(session_for(root, dry_run=dry_run, verbose=False), store,  # type: ignore[arg-type]
                 HookSettings.from_config(root), has_instance=kwargs.pop("has_instance", has_instance), **kwargs)


def test_one_run_per_instance_then_its_events_are_deleted(root: config_module.Section,
                                                          runs: list[dict[str, Any]]) -> None:
    store = Store([event("1", "a.lab.example"), event("2", "b.lab.example", phase="pre"),
                   event("3", "a.lab.example", hook="instance-modify")])
    assert make(root, store).cycle() == 1
    assert runs == [{"name": "sre.ganeti.sync-netbox", "argv": ["--cluster", "lab", "--vm", "a.lab.example"],
                     "origin": {"origin": "hook", "hooks": "instance-add,instance-modify", "events": "2"},
                     "dry_run": False}]
    assert sorted(store.deleted) == ["1", "2", "3"]


def test_clusters_and_instance_patterns_leave_other_events_alone(root: config_module.Section,
                                                                 runs: list[dict[str, Any]]) -> None:
    store = Store([event("1", "t-1.lab.example"), event("2", "web.lab.example"),
                   event("3", "t-2.lab.example", cluster="prod"), event("4", "t-3.lab.example", cluster="gone")])
    make(root, store, only=["lab"], instances=["t-*"]).cycle()
    assert [run["argv"][3] for run in runs] == ["t-1.lab.example"]
    assert store.deleted == ["1"]


def test_an_instance_a_cookbook_is_creating_waits_for_the_lock(root: config_module.Section,
                                                                runs: list[dict[str, Any]]) -> None:
    store = Store([event("1", "new.lab.example")])
    agent = make(root, store)
    with agent.session.locks.acquired(resources.instance_lock("lab", "new.lab.example"), concurrency=1):
        assert agent.cycle() == 0
    assert runs == [] and store.deleted == []
    assert agent.cycle() == 1 and store.deleted == ["1"]


def test_failed_runs_keep_the_events_until_max_attempts(root: config_module.Section,
                                                        runs: list[dict[str, Any]]) -> None:
    store = Store([event("1", "bad.lab.example")])
    EXIT["bad.lab.example"] = 99
    agent = make(root, store)
    assert agent.cycle() == 0 and store.deleted == []
    assert agent.cycle() == 0 and store.deleted == ["1"]
    assert len(runs) == 2


def test_dry_run_runs_dry_and_deletes_nothing(root: config_module.Section, runs: list[dict[str, Any]]) -> None:
    store = Store([event("1", "a.lab.example"), event("2", "b.lab.example", phase="pre")])
    make(root, store, dry_run=True).cycle()
    assert [run["dry_run"] for run in runs] == [True] and store.deleted == []


def test_main_refuses_an_unknown_cluster(root: config_module.Section, caplog: pytest.LogCaptureFixture) -> None:
    assert agent_module.main(["-c", root.source, "--cluster", "nope", "--once"]) == 1
    assert "unknown cluster(s) nope" in caplog.text


def test_a_forged_rename_between_two_live_instances_is_dropped(root: config_module.Section, runs: list[dict[str, Any]],
                                                               caplog: pytest.LogCaptureFixture) -> None:
    store = Store([event("1", "a.lab.example", hook="instance-rename", new_name="b.lab.example")])
    assert make(root, store).cycle() == 0
    assert runs == [] and store.deleted == ["1"]
    assert ("Dropping hook event 1 (instance-rename of a.lab.example, from node node1.lab.example): rename "
            "a.lab.example -> b.lab.example does not match Ganeti (a.lab.example still exists, b.lab.example "
            "exists)") in caplog.text


def test_a_rename_ganeti_shows_is_synced_with_the_old_name(root: config_module.Section,
                                                           runs: list[dict[str, Any]]) -> None:
    store = Store([event("1", "old.lab.example", hook="instance-rename", new_name="b.lab.example"),
                   event("2", "gone.lab.example", hook="instance-rename", new_name="never.lab.example")])
    assert make(root, store).cycle() == 1
    assert [run["argv"] for run in runs] == [["--cluster", "lab", "--vm", "b.lab.example", "--renamed-from",
                                              "old.lab.example"]]
    assert sorted(store.deleted) == ["1", "2"]


@pytest.mark.parametrize("name", ["x.prod.example", "lab.example", "a.lab.example.evil.org", "-x.lab.example",
                                  "a b.lab.example", "x.lab.example;reboot"])
def test_an_event_outside_the_domain_is_dropped_and_logged(root: config_module.Section, runs: list[dict[str, Any]],
                                                           caplog: pytest.LogCaptureFixture, name: str) -> None:
    store = Store([event("1", name, hook="instance-remove")])
    assert make(root, store).cycle() == 0
    assert runs == [] and store.deleted == ["1"]
    assert f"instance name {name!r} is not an FQDN in cluster lab's domain lab.example" in caplog.text


def test_a_removal_event_for_a_live_instance_only_syncs_it(root: config_module.Section, runs: list[dict[str, Any]],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    store = Store([event("1", "a.lab.example", hook="instance-remove"),
                   event("2", "gone.lab.example", hook="instance-remove")])
    assert make(root, store).cycle() == 2
    assert [run["argv"] for run in runs] == [["--cluster", "lab", "--vm", "a.lab.example"],
                                             ["--cluster", "lab", "--vm", "gone.lab.example", "--delete"]]
    assert "Removal event for a.lab.example, but Ganeti still has it: syncing it, nothing deleted" in caplog.text


def test_events_wait_while_ganeti_cannot_be_asked(root: config_module.Section, runs: list[dict[str, Any]],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    def unreachable(cluster: str, name: str) -> bool:
        raise GanetiError("RAPI at https://198.51.100.1:5080: connection refused")

    store = Store([event("1", "a.lab.example", hook="instance-remove")])
    assert make(root, store, has_instance=unreachable).cycle() == 0
    assert runs == [] and store.deleted == []
    assert "Cannot ask Ganeti about a.lab.example of cluster lab" in caplog.text


def test_a_cluster_without_a_domain_is_refused_at_start(root: config_module.Section, tmp_path: Path) -> None:
    data = yaml.safe_load(Path(root.source).read_text())
    del data["ganeti"]["clusters"]["prod"]["domain"]
    path = tmp_path / "nodomain.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="domain"):
        make(config_module.load(path), Store([]))


def test_bad_keys_of_our_clusters_or_of_no_configured_cluster_are_deleted_and_the_good_event_still_runs(
        root: config_module.Section, runs: list[dict[str, Any]], caplog: pytest.LogCaptureFixture) -> None:
    bad = [("/p/lab/1-x", "field 'time' must be int or float, not []"), ("/p/stray", "not a hook event"),
           ("/p/nowhere/1-x", "field 'cluster' is missing"), ("/p/prod/1-x", "field 'hook' is empty")]
    store = Store([event("/p/lab/2-y", "a.lab.example")], bad)
    assert make(root, store, only=["lab"]).cycle() == 1
    assert store.deleted == ["/p/lab/1-x", "/p/stray", "/p/nowhere/1-x", "/p/lab/2-y"]  # prod's agent has its own
    assert "Deleting /p/lab/1-x under the hook events prefix: not a valid hook event (field 'time' must be int " \
        "or float, not [])" in caplog.text
    assert [run["argv"] for run in runs] == [["--cluster", "lab", "--vm", "a.lab.example"]]


def test_dry_run_deletes_no_bad_key(root: config_module.Section, runs: list[dict[str, Any]]) -> None:
    store = Store([], [("/p/lab/1-x", "field 'time' must be int or float, not []")])
    make(root, store, dry_run=True).cycle()
    assert store.deleted == []


def test_a_full_read_is_followed_by_the_next_keys_in_the_next_cycle(root: config_module.Section,
                                                                    runs: list[dict[str, Any]]) -> None:
    class Full(Store):
        def read(self, start: str | None = None) -> Batch:
            batch = super().read(start)
            batch.more, batch.last = start is None, "/p/lab/9-z"
            return batch

    store = Full([])
    agent = make(root, store)
    agent.cycle(), agent.cycle(), agent.cycle()
    assert store.starts == [None, "/p/lab/9-z\0", None]


def test_an_unexpected_error_in_a_cycle_does_not_stop_the_agent(root: config_module.Section,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Store):
        def read(self, start: str | None = None) -> Batch:
            if len(self.starts) >= 2:
                stop.set()
            self.starts.append(start)
            raise TypeError("float() argument must be a string or a real number, not 'list'")

        def wait(self, timeout: float) -> bool:
            return False

        def close(self) -> None:
            pass

    stop = threading.Event()
    store = Broken([])
    make(root, store).run(stop)
    assert len(store.starts) == 3
    assert "Unexpected error in a cycle" in caplog.text
