"""libcluster.hooks.events and the agent's grouping: event format, `hooks` settings, coalescing per instance."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

from libcluster.config import Section
from libcluster.errors import ConfigError
from libcluster.etcd import EtcdAccess
from libcluster.hooks.agent import Work, coalesce
from libcluster.hooks.events import Event, EventStore, HookSettings

WRITTEN_BY_THE_SCRIPT = ('{"version":1,"cluster":"lab","hook":"instance-rename","phase":"post",'
                         '"op":"OP_INSTANCE_RENAME","instance":"old.lab.example","new_name":"new.lab.example",'
                         '"node":"node1.lab.example","time":1795316410}')


def event(key: str, instance: str, hook: str = "instance-add", phase: str = "post", new_name: str = "",
          cluster: str = "lab") -> Event:
    return Event(key=key, cluster=cluster, hook=hook, phase=phase, op="OP", instance=instance, new_name=new_name)


def test_an_event_as_the_hook_script_writes_it_parses() -> None:
    parsed = Event.from_json("/p/lab/1-node1-2", WRITTEN_BY_THE_SCRIPT)
    assert parsed == Event(key="/p/lab/1-node1-2", cluster="lab", hook="instance-rename", phase="post",
                           op="OP_INSTANCE_RENAME", instance="old.lab.example", new_name="new.lab.example",
                           node="node1.lab.example", time=1795316410.0)
    assert parsed.target == "new.lab.example"
    assert Event.from_json("k", json.dumps({**json.loads(WRITTEN_BY_THE_SCRIPT), "new_name": ""})).target == \
        "old.lab.example"


@pytest.mark.parametrize("text", ['{"version":2,"instance":"a"}', '{"version":1}', "[]", "not json"])
def test_malformed_events_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Event.from_json("k", text)


def test_settings_default_to_the_lock_etcd_and_name_every_bad_key() -> None:
    settings = HookSettings.from_config(Section({"locks": {"etcd_url": "http://127.0.0.1:2379"}}, "", "c.yaml"))
    assert settings == HookSettings(etcd=EtcdAccess("http://127.0.0.1:2379"),
                                    node_etcd=EtcdAccess("http://127.0.0.1:2379"))
    custom = HookSettings.from_config(Section({"hooks": {
        "etcd_url": "http://10.0.0.1:2379", "node_etcd_url": "http://10.0.0.2:2379", "etcd_prefix": "/x/hooks",
        "event_ttl": 60, "poll": 0.5, "max_attempts": 2}}, "", "c.yaml"))
    assert (custom.node_etcd.url, custom.prefix, custom.event_ttl, custom.poll, custom.max_attempts) == (
        "http://10.0.0.2:2379", "/x/hooks/", 60, 0.5, 2)
    with pytest.raises(ConfigError, match="hooks.etcd_url"):
        HookSettings.from_config(Section({}, "", "c.yaml"))
    with pytest.raises(ConfigError, match="overlaps the locks' prefix"):
        HookSettings.from_config(Section({"hooks": {"etcd_url": "http://a:1", "etcd_prefix": "/ganeti-cookbooks"}},
                                         "", "c.yaml"))
    with pytest.raises(ConfigError, match="hooks.node_etcd_url"):
        HookSettings.from_config(Section({"hooks": {"etcd_url": "http://a:1", "node_etcd_url": "a:1"}}, "", "c.yaml"))


SECURED = {"etcd_url": "https://etcd.example:2379", "etcd_ca_file": "/etc/ca.crt", "etcd_user": "cookbook-runner",
           "etcd_password": "runner-secret"}


def test_the_agent_uses_the_locks_user_and_nodes_get_their_own_user_never_the_runners() -> None:
    settings = HookSettings.from_config(Section({"locks": SECURED, "hooks": {
        "node_etcd_url": "https://198.51.100.1:2379", "node_etcd_user": "cookbook-node",
        "node_etcd_password": "node-secret"}}, "", "c.yaml"))
    assert settings.etcd == EtcdAccess("https://etcd.example:2379", "/etc/ca.crt", "cookbook-runner", "runner-secret")
    assert settings.node_etcd == EtcdAccess("https://198.51.100.1:2379", "/etc/ca.crt", "cookbook-node", "node-secret")
    with pytest.raises(ConfigError, match="hooks.node_etcd_user and hooks.node_etcd_password"):
        HookSettings.from_config(Section({"locks": SECURED}, "", "c.yaml"))
    other = HookSettings.from_config(Section({"locks": SECURED, "hooks": {"etcd_url": "https://other:2379"}}, "",
                                             "c.yaml"))
    assert other.etcd == EtcdAccess("https://other:2379")  # another etcd: the locks' CA and user are not its


@pytest.mark.parametrize(("keys", "message"), [
    ({"etcd_url": "http://etcd.example:2379", "etcd_user": "u", "etcd_password": "secret-pw"}, "sent in clear"),
    ({"etcd_url": "https://etcd.example:2379", "etcd_user": "u"}, "both a user name and a password"),
    ({"etcd_url": "http://etcd.example:2379", "etcd_ca_file": "/ca"}, "not https"),
])
def test_bad_etcd_access_is_refused_naming_the_key_and_never_the_password(keys: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        HookSettings.from_config(Section({"locks": keys}, "", "c.yaml"))
    assert "locks.etcd_url" in str(refused.value) and "secret-pw" not in str(refused.value)


def test_events_are_grouped_per_instance_as_now_named_and_pre_phase_ones_dropped() -> None:
    events = [
        event("1", "a.lab.example"),
        event("2", "b.lab.example", hook="instance-add", phase="pre"),
        event("3", "a.lab.example", hook="instance-modify"),
        event("4", "a.lab.example", hook="instance-rename", new_name="c.lab.example"),
        event("5", "a.lab.example", cluster="other"),
        event("6", "c.lab.example", hook="instance-stop"),
    ]
    work, dropped = coalesce(events)
    assert [(w.cluster, w.name, w.renamed_from, [e.key for e in w.events]) for w in work] == [
        ("lab", "a.lab.example", None, ["1", "3"]),
        ("lab", "c.lab.example", "a.lab.example", ["4", "6"]),
        ("other", "a.lab.example", None, ["5"]),
    ]
    assert [e.key for e in dropped] == ["2"]
    assert Work("lab", "c.lab.example", "a.lab.example", delete=True).args() == [
        "--cluster", "lab", "--vm", "c.lab.example", "--delete", "--renamed-from", "a.lab.example"]


def test_pending_reads_events_oldest_first_and_leaves_anything_else_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    store = EventStore(EtcdAccess("http://127.0.0.1:1"), "/hooks/")
    calls: list[tuple[str, dict[str, Any]]] = []
    stored = [("/hooks/lab/1-node1-9", WRITTEN_BY_THE_SCRIPT), ("/hooks/lab/2-node1-9", '{"concurrency": 1}')]

    def call(what: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        calls.append((path, payload))
        return {"kvs": [{"key": _b64(key), "value": _b64(value)} for key, value in stored]}

    monkeypatch.setattr(store, "_call", call)
    assert [event.key for event in store.pending("lab")] == ["/hooks/lab/1-node1-9"]
    assert [event.key for event in store.pending("lab")] == ["/hooks/lab/1-node1-9"]
    assert [path for path, _ in calls] == ["/kv/range", "/kv/range"]
    assert calls[0][1] == {"key": _b64("/hooks/lab/"), "range_end": _b64("/hooks0"), "sort_order": "ASCEND",
                           "sort_target": "KEY", "limit": 500}


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("time", [], "field 'time' must be int or float, not []"),
    ("time", "1795316410", "field 'time' must be int or float, not '1795316410'"),
    ("time", True, "field 'time' must be int or float, not True"),
    ("time", 10 ** 400, "field 'time' is out of range"),
    ("instance", {"a": 1}, "field 'instance' must be str, not {'a': 1}"),
    ("instance", "", "field 'instance' is empty"),
    ("new_name", 7, "field 'new_name' must be str, not 7"),
    ("cluster", None, "field 'cluster' is missing"),
    ("hook", ["instance-add"], "field 'hook' must be str"),
    ("version", True, "not a version 1 hook event"),
])
def test_a_field_of_the_wrong_type_is_refused_naming_it(field: str, value: Any, problem: str) -> None:
    data = {**json.loads(WRITTEN_BY_THE_SCRIPT), field: value}
    with pytest.raises(ValueError, match=re.escape(problem)):
        Event.from_json("k", json.dumps(data))


def test_a_read_is_bounded_and_returns_bad_keys_with_why_including_a_value_speaking_for_another_cluster(
        monkeypatch: pytest.MonkeyPatch) -> None:
    store = EventStore(EtcdAccess("http://127.0.0.1:1"), "/hooks/")
    other = json.dumps({**json.loads(WRITTEN_BY_THE_SCRIPT), "cluster": "prod"})
    stored = [("/hooks/lab/1-a", WRITTEN_BY_THE_SCRIPT), ("/hooks/lab/2-b", other),
              ("/hooks/lab/3-c", '{"version":1,"cluster":"lab","hook":"h","phase":"post","instance":"x","time":[]}')]
    payloads: list[dict[str, Any]] = []

    def call(what: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        payloads.append(payload)
        return {"kvs": [{"key": _b64(key), "value": _b64(value)} for key, value in stored], "more": True}

    monkeypatch.setattr(store, "_call", call)
    batch = store.read("/hooks/lab/0\0", limit=3)
    assert payloads == [{"key": _b64("/hooks/lab/0\0"), "range_end": _b64("/hooks0"), "sort_order": "ASCEND",
                         "sort_target": "KEY", "limit": 3}]
    assert [event.key for event in batch.events] == ["/hooks/lab/1-a"]
    assert batch.bad == [("/hooks/lab/2-b", "its value names cluster 'prod', its key 'lab' (a node may only speak "
                          "for its own cluster)"), ("/hooks/lab/3-c", "field 'time' must be int or float, not []")]
    assert (batch.more, batch.last) == (True, "/hooks/lab/3-c")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("cron_file", ["cron.d/cookbook-event", "/etc/cron.d/cookbook.event"])
def test_a_cron_file_cron_would_ignore_is_refused_naming_the_key(cron_file: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"key 'hooks.cron_file' ({cron_file}) must be an absolute path")):
        HookSettings.from_config(Section({"hooks": {"etcd_url": "http://a:1", "cron_file": cron_file}}, "", "c.yaml"))
    assert HookSettings.from_config(Section({"hooks": {"etcd_url": "http://a:1", "cron_file": ""}}, "",
                                            "c.yaml")).cron_file == ""
