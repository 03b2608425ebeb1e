"""drain-node, reboot-nodes and master-failover on the fake cluster: refusals before anything changes, the moves,
--shutdown-plain, --full (DRBD secondaries: the lab has no DRBD, so only here), --reboot waiting for a new boot id,
the rollback's undrain, the rolling order (master last after a failover), the stop at the first failure with the
node left drained, --resume from the audit log, --no-voting's refusal."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from libcluster.ganeti import GanetiError
from libcluster.ganeti.maintenance import KeyGate
from libcluster.ganeti.nodes import CANDIDATE_TAG, NodeStateError
from libcluster.testing import FakeCluster, FakeCtx, FakeRemote, load_config, load_cookbook, ok, run_runner

TREE = Path(__file__).resolve().parents[2]
N1, N2, N3 = "node1.example", "node2.example", "node3.example"


def _cluster() -> FakeCluster:
    cluster = FakeCluster()
    cluster.nodes_by_name[N2]["master_candidate"] = True
    cluster.add_node(N3, "A", master_candidate=True)
    return cluster


def _rebooting(cluster: FakeCluster, *, dead: tuple[str, ...] = ()) -> FakeRemote:
    """A remote whose `reboot` gives the node a new boot id (or leaves it down for a dead node)."""
    def respond(host: str, line: str) -> Any:
        if line == "reboot":
            if host in dead:
                cluster.down_nodes.add(host)
            else:
                fields = cluster.nodes_by_name[host]
                fields["bootid"] = fields.get("bootid", "boot-0") + "+"
        return ok()
    return FakeRemote(respond)


def _runner(tmp_path: Path, name: str, cluster: FakeCluster, argv: list[str], *, dry_run: bool = False,
            remote: FakeRemote | None = None, cls: str = "") -> tuple[Any, FakeCtx]:
    module = load_cookbook(TREE, name)
    ctx = FakeCtx(load_config(tmp_path), dry_run=dry_run, clusters={"lab": cluster}, remote=remote, name=name)
    cookbook = getattr(module, cls)(ctx)
    return cookbook.get_runner(cookbook.argument_parser().parse_args(["--cluster", "lab", *argv])), ctx


def test_drain_refuses_the_master_an_unknown_node_and_a_file_instance_before_anything(tmp_path: Path) -> None:
    cluster = _cluster()
    cluster.add_instance("vm1.example", "file", pnode=N2)
    for argv, message in (([N1], "master-failover"), (["node9.example"], "no node node9.example in cluster lab"),
                          ([N2], "sre.ganeti.changedisk --cluster lab --disk-template sharedfile vm1.example")):
        with pytest.raises(NodeStateError, match=message):
            _runner(tmp_path, "sre.ganeti.drain-node", cluster, argv, cls="DrainNode")
    assert not [call for call in cluster.calls if call[0] in ("node_role", "migrate_instance", "shutdown")]
    assert cluster.node(N2).role == "C"


def test_drain_moves_primaries_stops_plain_with_the_option_and_evacuates_secondaries(tmp_path: Path) -> None:
    cluster = _cluster()
    cluster.add_instance("run.example", "sharedfile", pnode=N2)
    cluster.add_instance("stopped.example", "sharedfile", up=False, pnode=N2)
    cluster.add_instance("local.example", "file", pnode=N2)
    cluster.add_instance("mirror.example", "drbd", pnode=N1, snodes=[N2])
    runner, _ = _runner(tmp_path, "sre.ganeti.drain-node", cluster, ["--full", "--shutdown-plain", N2],
                        cls="DrainNode")
    assert run_runner(runner, runner.ctx).exit_code == 0
    node = cluster.node(N2)
    assert node.drained and CANDIDATE_TAG in node.tags
    assert cluster.instance("run.example").primary_node != N2 and cluster.instance("run.example").running
    assert cluster.instance("stopped.example").primary_node != N2
    assert cluster.instance("local.example").admin_state == "down", "stopped explicitly, not moved"
    assert N2 not in cluster.instance("mirror.example").secondary_nodes
    kinds = [call[0] for call in cluster.calls]
    assert {"migrate", "failover", "evacuate_node"} <= set(kinds)


def test_drain_reboot_waits_for_a_new_boot_id_and_undrains(tmp_path: Path) -> None:
    cluster = _cluster()
    cluster.add_instance("run.example", "sharedfile", pnode=N2)
    runner, _ = _runner(tmp_path, "sre.ganeti.drain-node", cluster, ["--reboot", N2], remote=_rebooting(cluster),
                        cls="DrainNode")
    assert run_runner(runner, runner.ctx).exit_code == 0
    assert runner.done.boot_id == ("boot-node2.example", "boot-0+") == ("boot-node2.example", cluster.boot_ids()[N2])
    assert cluster.node(N2).role == "C", "undrained: a candidate again"


def test_a_failed_reboot_rolls_back_by_undraining_and_saying_where_each_instance_is(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = _cluster()
    cluster.add_instance("run.example", "sharedfile", pnode=N2)
    runner, _ = _runner(tmp_path, "sre.ganeti.drain-node", cluster, ["--reboot", N2],
                        remote=_rebooting(cluster, dead=(N2,)), cls="DrainNode")
    outcome = run_runner(runner, runner.ctx)
    assert outcome.exit_code != 0
    where = cluster.instance("run.example").primary_node
    assert where != N2 and f"run.example: on {where}" in capsys.readouterr().out
    assert not cluster.node(N2).drained, "the rollback undrains"


def test_a_failed_move_rolls_back_by_undraining(tmp_path: Path) -> None:
    cluster = _cluster()
    cluster.add_instance("run.example", "sharedfile", pnode=N2)
    cluster.errors["migrate"] = GanetiError("migration failed: target unreachable")
    runner, _ = _runner(tmp_path, "sre.ganeti.drain-node", cluster, [N2], cls="DrainNode")
    assert run_runner(runner, runner.ctx).exit_code != 0
    assert runner.done is not None and not runner.done.drained
    assert not cluster.node(N2).drained, "the rollback undrains a node drained before the failed move"
    assert cluster.instance("run.example").primary_node == N2


def test_drain_dry_run_changes_nothing(tmp_path: Path) -> None:
    cluster = FakeCluster(dry_run=True)
    cluster.nodes_by_name[N2]["master_candidate"] = True
    cluster.add_node(N3, "A", master_candidate=True)
    cluster.add_instance("run.example", "sharedfile", pnode=N2)
    runner, ctx = _runner(tmp_path, "sre.ganeti.drain-node", cluster, [N2], dry_run=True, cls="DrainNode")
    assert run_runner(runner, ctx).exit_code == 0
    assert cluster.node(N2).role == "C" and cluster.instance("run.example").primary_node == N2


def test_rolling_reboot_master_last_after_a_failover(tmp_path: Path) -> None:
    cluster = _cluster()
    runner, ctx = _runner(tmp_path, "sre.ganeti.reboot-nodes", cluster, ["--group", "A"],
                          remote=_rebooting(cluster), cls="RebootNodes")
    assert runner.groups == [[N2, N3]] and runner.master == N1
    assert run_runner(runner, ctx).exit_code == 0
    assert cluster.master() == N2, "failed over to a candidate this run rebooted"
    assert [run.node for run in runner.runs] == [N2, N3, N1]
    assert all(str(cluster.boot_ids()[node]).endswith("+") for node in (N1, N2, N3))
    assert not any(cluster.node(node).drained for node in (N1, N2, N3))


def test_rolling_reboot_stops_at_the_first_failure_leaving_the_node_drained(tmp_path: Path) -> None:
    cluster = _cluster()
    runner, ctx = _runner(tmp_path, "sre.ganeti.reboot-nodes", cluster, ["--group", "A"],
                          remote=_rebooting(cluster, dead=(N2,)), cls="RebootNodes")
    assert run_runner(runner, ctx).exit_code == 1
    assert cluster.node(N2).drained, "left drained"
    assert not cluster.node(N3).drained and cluster.boot_ids()[N3] == "boot-node3.example", "untouched"
    assert cluster.master() == N1
    assert any(f"{N2} is left drained, rollout stopped" in line for line in ctx.notifications)


def test_resume_skips_the_nodes_the_previous_runs_returned_to_service(tmp_path: Path) -> None:
    audit_log = tmp_path / "audit.jsonl"
    role = {"action": "node-role", "system": "ganeti", "dry_run": False}
    records = [
        {"event": "end", "cookbook": "sre.ganeti.reboot-nodes", "argv": ["--cluster", "lab", "--group", "A"],
         "dry_run": False, "changes": [{**role, "target": N3, "detail": {"role": "master-candidate"}}]},
        {"event": "end", "cookbook": "sre.ganeti.reboot-nodes", "argv": ["--cluster", "lab", "--group", "A"],
         "dry_run": False, "changes": [{**role, "target": N2, "detail": {"role": "drained"}},
                                       {**role, "target": N2, "detail": {"role": "master-candidate"}}]},
        {"event": "end", "cookbook": "sre.ganeti.reboot-nodes", "argv": ["--cluster", "prod", "--group", "A"],
         "dry_run": False, "changes": [{**role, "target": N3, "detail": {"role": "regular"}}]},
    ]
    audit_log.write_text("".join(json.dumps(record) + "\n" for record in records))
    module = load_cookbook(TREE, "sre.ganeti.reboot-nodes")
    ctx = FakeCtx(load_config(tmp_path, {"audit_log": str(audit_log)}), clusters={"lab": _cluster()})
    assert module.resumed(ctx, "lab") == {N2}, "only the last run without --resume, on this cluster"


def test_master_failover_refuses_no_voting_on_more_than_two_nodes(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="two-node clusters only"):
        _runner(tmp_path, "sre.ganeti.master-failover", _cluster(), ["--no-voting"], cls="MasterFailover")


def test_a_migration_failing_after_the_drain_says_the_node_is_left_drained(tmp_path: Path) -> None:
    cluster = _cluster()
    cluster.add_instance("run.example", "sharedfile", pnode=N2)
    cluster.errors["migrate"] = GanetiError("Can't get data for node node3.example")  # seen on the lab: a dead target
    runner, ctx = _runner(tmp_path, "sre.ganeti.reboot-nodes", cluster, ["--group", "A"],
                          remote=_rebooting(cluster), cls="RebootNodes")
    assert run_runner(runner, ctx).exit_code == 1
    assert cluster.node(N2).drained
    assert any(f"{N2} is left drained, rollout stopped" in line for line in ctx.notifications), ctx.notifications


def test_a_failed_candidate_tag_after_the_drain_was_sent_rolls_back_by_undraining(tmp_path: Path) -> None:
    cluster = _cluster()
    cluster.errors["tags_add"] = GanetiError("tag job failed")
    runner, _ = _runner(tmp_path, "sre.ganeti.drain-node", cluster, [N2], cls="DrainNode")
    assert run_runner(runner, runner.ctx).exit_code != 0
    assert [call[0] for call in cluster.calls if call[0] in ("tags_add", "node_role")][:2] == ["tags_add", "node_role"], \
        "the role job is sent before the tag job is waited for"
    assert not cluster.node(N2).drained, "the drain went through although the tag failed: the rollback undrains"


def test_the_moves_wait_in_ganetis_queue_behind_the_drain_and_verify_disks_checks_the_nodes_group(
        tmp_path: Path) -> None:
    cluster = _cluster()
    cluster.add_instance("run1.example", "sharedfile", pnode=N2)
    cluster.add_instance("run2.example", "sharedfile", pnode=N2)
    runner, _ = _runner(tmp_path, "sre.ganeti.drain-node", cluster, ["--reboot", N2], remote=_rebooting(cluster),
                        cls="DrainNode")
    assert run_runner(runner, runner.ctx).exit_code == 0
    drain_jobs = [job["id"] for job in cluster.job_list
                  if job["summary"] in ([f"tags_add node {N2}"], [f"node_role {N2}"])][:2]
    assert len(drain_jobs) == 2, cluster.job_list
    migrations = [(call[1], call[2]) for call in cluster.calls if call[0] == "migrate"]
    assert [(name, options["depends"]) for name, options in migrations] == [
        ("run1.example", drain_jobs), ("run2.example", drain_jobs)], "both sent before the drain was waited for"
    assert ("verify_disks", {"group": "uuid-A"}) in cluster.calls, "the rebooted node's group"


def test_a_failed_move_does_not_hide_the_others(tmp_path: Path) -> None:
    cluster = _cluster()
    cluster.add_instance("run.example", "sharedfile", pnode=N2)
    cluster.add_instance("stopped.example", "sharedfile", up=False, pnode=N2)
    cluster.errors["migrate"] = GanetiError("migration failed: target unreachable")
    runner, _ = _runner(tmp_path, "sre.ganeti.drain-node", cluster, [N2], cls="DrainNode")
    assert run_runner(runner, runner.ctx).exit_code != 0
    assert runner.done is not None and set(runner.done.moved) == {"stopped.example"}, "waited for after the failure"
    assert cluster.instance("stopped.example").primary_node != N2


def test_verify_disks_runs_once_noded_is_back_and_a_node_without_ssh_fails_the_reboot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    cluster = _cluster()
    cluster.add_instance("run.example", "sharedfile", pnode=N2)
    runner, _ = _runner(tmp_path, "sre.ganeti.drain-node", cluster, ["--reboot", N2], remote=_rebooting(cluster),
                        cls="DrainNode")
    monkeypatch.setattr(cluster, "answers_ssh", lambda node: False)  # noded back with a new boot id, sshd not
    assert run_runner(runner, runner.ctx).exit_code != 0
    assert ("verify_disks", {"group": "uuid-A"}) in cluster.calls, "verify-disks ran while SSH was awaited"
    assert runner.done.boot_id[1] == "boot-0+" and "reboot" not in runner.done.timings
    assert f"node {N2} of cluster lab is not back: SSH does not answer" in caplog.text
    assert not cluster.node(N2).drained, "the rollback undrains"


class _Held:
    """first() entered in a thread and held until release(); second() tried in another thread meanwhile."""

    def __init__(self, first: Callable[[], AbstractContextManager[None]],
                 second: Callable[[], AbstractContextManager[None]]) -> None:
        self.events: list[str] = []
        entered, self._release = threading.Event(), threading.Event()

        def hold() -> None:
            with first():
                self.events.append("first")
                entered.set()
                self._release.wait(5)
                self.events.append("first done")

        def wait() -> None:
            with second():
                self.events.append("second")

        self._holder, self._waiter = threading.Thread(target=hold), threading.Thread(target=wait)
        self._holder.start()
        assert entered.wait(5)
        self._waiter.start()
        self._waiter.join(0.2)

    @property
    def waiting(self) -> bool:
        """Whether second() is still waiting."""
        return self._waiter.is_alive()

    def release(self) -> None:
        """Let first() end, and wait for both threads."""
        self._release.set()
        self._holder.join(5)
        self._waiter.join(5)


def test_the_key_gate_keeps_role_changes_and_reboots_apart() -> None:
    gate = KeyGate()
    held = _Held(gate.node_down, gate.role_change)
    assert held.waiting and held.events == ["first"], "the role change waits while a node is down"
    with gate.node_down():
        held.events.append("second down")  # reboots overlap each other
    held.release()
    assert held.events == ["first", "second down", "first done", "second"]


def test_the_key_gate_holds_a_reboot_during_a_role_change_and_refuses_them_once_a_node_stayed_down() -> None:
    gate = KeyGate()
    held = _Held(gate.role_change, gate.node_down)
    assert held.waiting and held.events == ["first"], "the reboot waits for the role change"
    held.release()
    assert held.events == ["first", "first done", "second"]
    gate.left_down(N2)
    with pytest.raises(GanetiError, match=f"no role change while {N2} is down"), gate.role_change():
        held.events.append("never")
    assert held.events[-1] == "second"


def test_a_move_that_cannot_be_sent_leaves_nothing_unobserved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = _cluster()
    cluster.add_instance("run1.example", "sharedfile", pnode=N2)
    cluster.add_instance("run2.example", "sharedfile", pnode=N2)
    sent = cluster.move_primary

    def move_primary(name: str, **options: Any) -> Any:
        if name == "run2.example":
            raise GanetiError("RAPI PUT /2/instances/run2.example/migrate: connection reset")
        return sent(name, **options)

    monkeypatch.setattr(cluster, "move_primary", move_primary)
    runner, _ = _runner(tmp_path, "sre.ganeti.drain-node", cluster, [N2], cls="DrainNode")
    assert run_runner(runner, runner.ctx).exit_code != 0
    assert runner.done is not None and runner.done.moved == {"run1.example": N1}, "the queued move was waited for"
    assert not cluster.node(N2).drained, "the drain ended before the rollback undrained"


def test_a_failed_role_job_on_undrain_keeps_the_candidate_tag(tmp_path: Path) -> None:
    cluster = _cluster()
    cluster.drain(N2)
    assert CANDIDATE_TAG in cluster.node(N2).tags
    cluster.errors["node_role"] = GanetiError("role job failed")
    with pytest.raises(GanetiError, match="role job failed"):
        cluster.undrain(N2)
    assert CANDIDATE_TAG in cluster.node(N2).tags and cluster.node(N2).drained, "put back: a later undrain makes it C"
    del cluster.errors["node_role"]
    assert cluster.undrain(N2).new.value == "master-candidate" and cluster.node(N2).role == "C"


def test_rolling_reboot_dry_run_with_the_master_describes_its_drain(tmp_path: Path) -> None:
    cluster = FakeCluster(dry_run=True)
    cluster.nodes_by_name[N2]["master_candidate"] = True
    cluster.add_instance("run.example", "sharedfile", pnode=N1)
    runner, ctx = _runner(tmp_path, "sre.ganeti.reboot-nodes", cluster, ["--group", "A"], dry_run=True,
                          remote=_rebooting(cluster), cls="RebootNodes")
    assert run_runner(runner, ctx).exit_code == 0
    assert cluster.master() == N1 and cluster.instance("run.example").primary_node == N1, "nothing changed"
    assert ("node_role", N1, "drained", {"auto_promote": True}) in cluster.calls, "the master's drain described"
