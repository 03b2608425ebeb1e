"""The undo of Ganeti writes against the lab cluster: journaled with their ids, undone from the journal, idempotent.

Every instance is named `cbu-<random>.lab.example` and removed at the end, even when the test fails.
Undo steps are rebuilt from the journal lines and run on a fresh client, as `cookbook --recover` does.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from libcluster import config as config_module
from libcluster import undo as undo_module
from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.ganeti import GanetiCluster, JobFailedError, RapiNotFoundError, connect
from libcluster.ganeti.inverse import declare
from libcluster.ganeti.rapi import Credentials, RapiAnswerLostError, RapiClient
from libcluster.writes import NotOursError
from tests.lab.undo_lab import Clients, Journaled, LosingAdapter


@pytest.fixture(scope="module")
def root_config(lab: dict[str, Any]) -> Section:
    """The generated configuration of the lab (skips when its Ganeti part is not up)."""
    path = Path(lab.get("config", ""))
    if not (lab.get("ganeti") or {}).get("up") or not path.is_file():
        pytest.skip("lab Ganeti part or its generated configuration is not available")
    return config_module.load(path)


def _client(config: Section, changes: ChangeLog | None = None) -> GanetiCluster:
    return connect(config, "lab", dry_run=False, changes=changes or ChangeLog(dry_run=False), remote=None)


@pytest.fixture
def run(root_config: Section, tmp_path: Path) -> Journaled:
    """A journaled run whose undo steps run on fresh clients of the lab cluster."""
    return Journaled(tmp_path, Clients(ganeti=lambda name: _client(root_config)))


@pytest.fixture
def names(root_config: Section) -> Iterator[Callable[[], str]]:
    """Unique instance names; whatever exists of them is removed at the end."""
    made: list[str] = []

    def new_name() -> str:
        made.append(f"cbu-{secrets.token_hex(4)}.lab.example")
        return made[-1]

    yield new_name
    cleaner = _client(root_config)
    existing = set(cleaner.instance_names())
    for name in made:
        if name in existing:
            cleaner.remove_instance(name, shutdown_timeout=0).wait(timeout=300)


def _spec(cluster: GanetiCluster) -> dict[str, Any]:
    node = sorted(cluster.group("A")["node_list"])[0]
    return {"disk_template": "diskless", "disks": [], "os_type": "noop", "memory": 128, "vcpus": 1, "pnode": node,
            "name_check": False}


def _exists(cluster: GanetiCluster, name: str) -> bool:
    try:
        cluster.instance(name)
    except RapiNotFoundError:
        return False
    return True


def test_create_is_journaled_with_its_job_and_undone_from_the_journal(
        run: Journaled, root_config: Section, names: Callable[[], str]) -> None:
    cluster = _client(root_config, run.changes)
    name = names()
    job = cluster.create_instance(name, **_spec(cluster))
    job.wait()
    [intent] = run.lines("intent")
    [result] = run.lines("result")
    assert (intent["system"], intent["action"], intent["target"]) == ("ganeti", "instance-create", name)
    assert intent["undo"]["action"] == "instance-remove" and intent["undo"]["args"]["cluster"] == "lab"
    assert result["seq"] == intent["seq"] and result["status"] == "done" and result["detail"] == {"job_id": job.id}
    [undo] = run.from_journal()
    assert undo.args["job_id"] == job.id
    assert undo_module.run(undo, Clients(ganeti=lambda _: _client(root_config))) == "undone"
    assert not _exists(cluster, name)
    assert undo_module.run(undo, Clients(ganeti=lambda _: _client(root_config))) == "absent"


def test_a_create_whose_answer_was_lost_is_maybe_and_its_job_found_by_its_marker(
        run: Journaled, root_config: Section, names: Callable[[], str]) -> None:
    cluster = _client(root_config, run.changes)
    section = root_config.section("ganeti").section("clusters").section("lab")
    losing = LosingAdapter()
    cluster.rapi = RapiClient(
        cluster.rapi.url, read_write=Credentials(section.str("rapi_user"), section.str("rapi_password")),
        read_only=Credentials(section.str("rapi_ro_user"), section.str("rapi_ro_password")),
        ca_file=section.str("ca_file"), timeout=30, adapter=losing)
    name = names()
    with pytest.raises(RapiAnswerLostError):
        cluster.create_instance(name, **_spec(cluster))
    assert len(losing.lost) == 1 and losing.lost[0].startswith("POST /2/instances?reason=cookbooks-write")
    [result] = run.lines("result")
    assert result["status"] == "maybe" and result["detail"] == {}
    [(seq, undo)] = run.stack.steps
    assert seq == result["seq"] and "job_id" not in undo.args
    assert run.stack.rollback() == []
    assert not _exists(cluster, name), "the instance made by the lost request is still there"
    [line] = run.lines("undo")
    assert (line["seq"], line["status"]) == (seq, "undone")
    assert cluster.undo(undo.action, undo.args) == "absent"


def test_an_instance_the_write_did_not_make_is_left_alone(
        run: Journaled, root_config: Section, names: Callable[[], str]) -> None:
    other = _client(root_config)
    name = names()
    other.create_instance(name, **_spec(other)).wait()
    # Killed between the intent and the request: no job carries the write's marker.
    never_sent = declare(other, "instance-remove", name, name=name)
    with pytest.raises(NotOursError, match=name):
        other.undo(never_sent.action, never_sent.args)
    # A create refused because the name exists: its job failed, the instance is someone else's.
    cluster = _client(root_config, run.changes)
    refused = cluster.create_instance(name, **_spec(cluster))
    with pytest.raises(JobFailedError) as failed:
        refused.wait()
    assert failed.value.classification == "already_exists"
    assert run.stack.rollback() == []
    assert [line["status"] for line in run.lines("undo")] == ["absent"]
    assert _exists(other, name)


def test_shutdown_modify_and_tags_are_undone_in_reverse_order(
        run: Journaled, root_config: Section, names: Callable[[], str]) -> None:
    setup = _client(root_config)
    name = names()
    setup.create_instance(name, **_spec(setup)).wait()
    before = setup.instance(name)
    assert before["admin_state"] == "up"
    cluster = _client(root_config, run.changes)
    cluster.add_tags("instance", name, ["cbu:one", "cbu:two"]).wait()
    cluster.modify_instance(name, beparams={"memory": 256, "vcpus": 2}).wait()
    cluster.shutdown_instance(name, timeout=0).wait()
    changed = setup.instance(name)
    assert changed["admin_state"] == "down" and changed["beparams"]["maxmem"] == 256
    assert [undo.action for _, undo in run.stack.steps] == ["tags-remove", "instance-modify", "instance-startup"]
    assert run.stack.rollback() == []
    after = setup.instance(name)
    assert after["admin_state"] == "up"
    assert after["custom_beparams"] == before["custom_beparams"]
    assert after["beparams"]["maxmem"] == before["beparams"]["maxmem"]
    assert not {"cbu:one", "cbu:two"} & set(setup.tags("instance", name))
    assert [line["status"] for line in run.lines("undo")] == ["undone"] * 3
    for undo in run.from_journal():
        assert setup.undo(undo.action, undo.args) == "absent", undo.describe()


def test_a_parameter_changed_by_someone_else_since_is_not_modified_back(
        run: Journaled, root_config: Section, names: Callable[[], str]) -> None:
    setup = _client(root_config)
    name = names()
    setup.create_instance(name, **_spec(setup)).wait()
    cluster = _client(root_config, run.changes)
    cluster.modify_instance(name, beparams={"vcpus": 2}).wait()
    setup.modify_instance(name, beparams={"vcpus": 3}).wait()
    [undo] = run.from_journal()
    with pytest.raises(NotOursError, match=name):
        setup.undo(undo.action, undo.args)
    assert setup.instance(name)["beparams"]["vcpus"] == 3


def test_a_job_still_queued_is_canceled_and_nothing_is_left_to_undo(
        run: Journaled, root_config: Section, names: Callable[[], str]) -> None:
    setup = _client(root_config)
    name = names()
    setup.create_instance(name, **_spec(setup)).wait()
    # A job filter (Ganeti's /2/filters) keeps this instance's tag jobs queued.
    pause = {"priority": 0, "action": "PAUSE", "reason": [],
             "predicates": [["opcode", ["&", ["=", "OP_ID", "OP_TAGS_SET"], ["=", "name", name]]]]}
    uuid = setup.rapi.write("POST", "/2/filters", body=pause)
    try:
        job = _client(root_config, run.changes).add_tags("instance", name, ["cbu:queued"])
        assert setup.job(job.id)["status"] == "queued"
        [undo] = run.from_journal()
        assert setup.undo(undo.action, undo.args) == "absent"
        assert setup.job(job.id)["status"] == "canceled"
    finally:
        setup.rapi.write("DELETE", f"/2/filters/{uuid}")
    assert "cbu:queued" not in setup.tags("instance", name)


def test_an_instance_recreated_by_someone_else_after_the_write_is_left_alone(
        run: Journaled, root_config: Section, names: Callable[[], str]) -> None:
    name = names()
    cluster = _client(root_config, run.changes)
    cluster.create_instance(name, **_spec(cluster)).wait()
    other = _client(root_config)
    other.remove_instance(name, shutdown_timeout=0).wait()
    other.create_instance(name, **_spec(other)).wait()
    [undo] = run.from_journal()
    with pytest.raises(NotOursError, match=f"{name}.*not created by job {undo.args['job_id']}"):
        other.undo(undo.action, undo.args)
    assert _exists(other, name)
