"""Fixtures of the runner tests: the fixture cookbook trees, a config in a temp dir, and in-process CLI runs."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from libcluster import interactive
from libcluster.runner import cli
from tests.unit.runner.runner_env import Env

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
"""Base dir holding the fixture tree tests/fixtures/cookbooks/."""


@pytest.fixture(scope="session")
def tree() -> Path:
    """Base dir of the fixture cookbook tree."""
    return FIXTURES


@pytest.fixture(autouse=True)
def _forget_cookbooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test imports fixture cookbooks afresh (forgetting only what it imported) and restores sys.path."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("SUDO_USER", raising=False)
    for variable in ("COOKBOOK_ORIGIN", "COOKBOOK_REQUESTER", "COOKBOOK_APPROVER", "COOKBOOK_CHANNEL", "COOKBOOK_CONFIG"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/nonexistent-cache-for-tests")
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name == "cookbooks" or name.startswith("cookbooks."):
            del sys.modules[name]


@pytest.fixture
def env(tmp_path: Path) -> Env:
    """A config using the fixture tree, with logs, audit log and file locks under tmp_path; no SAL."""
    logs = tmp_path / "logs"
    config = tmp_path / "config.yaml"
    data = {
        "cookbooks_base_dirs": [str(FIXTURES)],
        "logs_base_dir": str(logs),
        "audit_log": str(logs / "audit.jsonl"),
        "locks": {"file_dir": str(tmp_path / "locks"), "ttl": 30, "wait_tries": 3, "wait_sleep": 0.05},
        "netbox": {"url": "https://netbox.invalid", "token": "nbt_fixture_secret_token_value"},
    }
    config.write_text(yaml.safe_dump(data))
    return Env(tmp_path, config, logs, logs / "audit.jsonl", tmp_path / "locks")


@pytest.fixture
def cookbook(env: Env) -> Callable[..., int]:
    """Run ``cookbook -c CONFIG ARGS...`` in-process and return its exit code."""

    def run(*args: str) -> int:
        return cli.main(["-c", str(env.config), *args])

    return run


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Pretend a person sits at a terminal and will type the given lines."""

    def answer(text: str) -> None:
        import io

        monkeypatch.setattr(interactive, "is_terminal", lambda: True)
        monkeypatch.setattr(sys, "stdin", io.StringIO(text))

    return answer
