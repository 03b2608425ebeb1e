"""Completion of `cookbook` from the static catalog: names, global options, a cookbook's options (the same as its
real parser's), and the bash function of packaging/bash-completion run by bash itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from libcluster.runner import catalog, cli, discovery, execute

REPO = Path(__file__).resolve().parents[3]


def _complete(capsys: pytest.CaptureFixture[str], *words: str) -> list[str]:
    assert cli.main(["--complete", str(len(words) - 1), *words]) == 0
    return capsys.readouterr().out.splitlines()


@pytest.fixture
def repo_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(f"cookbooks_base_dirs: [{REPO}]\nlogs_base_dir: {tmp_path}/logs\n")
    monkeypatch.setenv("COOKBOOK_CONFIG", str(config))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return config


def test_names_global_options_and_a_cookbooks_options(repo_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _complete(capsys, "cookbook", "sre.ganeti.r") == sorted(
        f"sre.ganeti.{path.stem}" for path in (REPO / "cookbooks" / "sre" / "ganeti").glob("r*.py"))
    assert _complete(capsys, "cookbook", "sre.ganeti.ren") == ["sre.ganeti.renew-crypto"]
    assert _complete(capsys, "cookbook", "--d") == ["--doctor", "--dry-run"]
    assert _complete(capsys, "cookbook", "-d", "-y", "sre.ganeti.makevm", "--d") == ["--disk", "--disk-template"]
    # --group is added by the group's helper only when asked: changedisk does not get it.
    assert "--group" in _complete(capsys, "cookbook", "sre.ganeti.makevm", "--")
    assert "--group" not in _complete(capsys, "cookbook", "sre.ganeti.changedisk", "--")
    assert _complete(capsys, "cookbook", "sre.ganeti.makevm", "--cluster", "") == []  # a value: left to the shell
    assert _complete(capsys, "cookbook", "-c", "") == []  # a file name: left to the shell


def test_the_config_on_the_line_and_the_fallback_dirs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    other = tmp_path / "other.yaml"
    other.write_text(f"cookbooks_base_dirs: [{REPO}]\nlogs_base_dir: {tmp_path}\n")
    monkeypatch.setenv("COOKBOOK_CONFIG", str(tmp_path / "unreadable.yaml"))
    monkeypatch.delenv("COOKBOOK_COMPLETE_DIRS", raising=False)
    assert _complete(capsys, "cookbook", "sre.dns.") == []
    assert _complete(capsys, "cookbook", "-c", str(other), "sre.dns.") == ["sre.dns.netbox"]
    assert _complete(capsys, "cookbook", "-dc", str(other), "sre.dns.") == ["sre.dns.netbox"]
    monkeypatch.setenv("COOKBOOK_COMPLETE_DIRS", str(REPO))
    assert _complete(capsys, "cookbook", "sre.dns.") == ["sre.dns.netbox"]


def test_static_options_are_those_of_the_real_parsers(tmp_path: Path) -> None:
    base = [REPO]
    cookbooks = catalog.scan(base).cookbooks()
    assert cookbooks
    for node in cookbooks:
        loaded = discovery.load(base, node.name)
        cookbook = loaded.cls(None)
        parser = cookbook.argument_parser()
        execute.prepare_parser(cookbook, parser, loaded.name, loaded.owner_team)
        real = sorted(option for action in parser._actions for option in action.option_strings
                      if option not in ("-h", "--help"))
        assert node.options == real, node.name


def test_the_bash_function(repo_config: Path, tmp_path: Path) -> None:
    script = f"""source {REPO}/packaging/bash-completion
COMP_WORDS=(cookbook sre.ganeti.makevm --s); COMP_CWORD=2; _cookbook; echo "options: ${{COMPREPLY[*]}}"
COMP_WORDS=(cookbook sre.gan); COMP_CWORD=1; _cookbook; echo "names: ${{COMPREPLY[*]}}"
complete -p cookbook
"""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # this venv's cookbook
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "options: --skip-v6\n" in result.stdout
    assert "names: sre.ganeti sre.ganeti.addnode sre.ganeti.changedisk" in result.stdout
    assert "complete -o default -F _cookbook cookbook" in result.stdout
