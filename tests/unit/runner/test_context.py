"""The context: one client per accessor and argument per run, built with the run's dry-run and change log."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from libcluster import config
from libcluster.context import Context, Session


class Recorder:
    """Stands for a client class: remembers how it was built."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Keep the arguments."""
        self.args = args
        self.kwargs = kwargs


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    """A context over a config with remote, netbox and dns sections, and fake client modules."""
    path = tmp_path / "config.yaml"
    path.write_text("remote: {ssh_user: root}\nnetbox: {url: https://nb}\ndns: {server: 192.0.2.53}\n")
    root = config.load(path)
    for module, attr in (("remote", "Remote"), ("netbox", "NetBox"), ("dns", "DNS")):
        monkeypatch.setitem(sys.modules, f"libcluster.{module}", types.SimpleNamespace(**{attr: Recorder}))
    monkeypatch.setitem(sys.modules, "libcluster.ganeti", types.SimpleNamespace(connect=Recorder))
    import libcluster

    monkeypatch.setattr(libcluster, "ganeti", sys.modules["libcluster.ganeti"], raising=False)
    session = Session(config=root, base_dirs=[], logs_dir=tmp_path, dry_run=True, verbose=False, user="alice",
                      origin={"origin": "terminal"}, prompter=mock.Mock(), locks=mock.MagicMock(), audit=mock.Mock())
    return Context(session, "sre.x", "run1")


def test_clients_are_built_once_per_argument_with_dry_run_and_changes(ctx: Context) -> None:
    remote = ctx.remote()
    assert ctx.remote() is remote
    assert remote.args[0].where == "remote"
    assert remote.kwargs == {"dry_run": True, "changes": ctx.changes}
    assert ctx.netbox() is ctx.netbox(read_write=False)
    assert ctx.netbox(read_write=True) is not ctx.netbox()
    assert ctx.netbox(read_write=True).kwargs["read_write"] is True
    assert ctx.dns().args[0].where == "dns"
    lab = ctx.ganeti("lab")
    assert ctx.ganeti("lab") is lab and ctx.ganeti("prod") is not lab
    assert lab.args == (ctx.config, "lab")
    assert lab.kwargs == {"dry_run": True, "changes": ctx.changes, "remote": ctx.remote}
    assert lab.kwargs["remote"]() is remote  # a factory: cumin is loaded only when a gnt-* command runs


def test_prompts_and_locks_go_to_the_session_services(ctx: Context) -> None:
    ctx.confirm("Go?")
    ctx._session.prompter.confirm.assert_called_once_with("Go?")  # type: ignore[attr-defined]
    ctx.ask_input("Which?", choices=["a"])
    ctx._session.prompter.ask_input.assert_called_once_with("Which?", ["a"], None)  # type: ignore[attr-defined]
    with ctx.lock("instance:vm1", concurrency=2, ttl=30):
        pass
    ctx._session.locks.acquired.assert_called_once_with(  # type: ignore[attr-defined]
        "custom/instance:vm1", concurrency=2, ttl=30)


def test_notify_goes_to_sal_only_in_real_runs(ctx: Context) -> None:
    ctx._session.sal = mock.Mock()
    ctx.notify("draining node1")
    ctx._session.sal.send.assert_not_called()
    ctx._session.dry_run = False
    ctx.notify("draining node1")
    ctx._session.sal.send.assert_called_once_with("sre.x: draining node1")
