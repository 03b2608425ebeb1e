"""The `cookbook` command itself: help, global option errors, configuration errors, menus, the console script."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.unit.runner.runner_env import Env

from libcluster.runner import cli

COOKBOOK = Path(sys.executable).with_name("cookbook")
"""The installed console script."""


def test_help_reads_like_a_man_page(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: cookbook [-h] [-l] [--doctor] [--recover [RUN_ID]] [-c CONFIG] [-d] [-v] [-y] "
                          "[--no-locks] [COOKBOOK] [ARGS...]\n")
    for section in ("exit codes:", "environment:", "files:", "examples:"):
        assert f"\n{section}\n" in out
    for word in ("93 ", "94 ", "95 ", "96 ", "97 ", "98 ", "99 ", "SUDO_USER", "COOKBOOK_ORIGIN", "COOKBOOK_REQUESTER",
                 "COOKBOOK_APPROVER", "COOKBOOK_CHANNEL", "/etc/ganeti-cookbooks/config.yaml", "-extended.log",
                 "COOKBOOK_CONFIG", "(default: LOGS/audit.jsonl)", "(default: /var/lock/cookbooks)"):
        assert word in out, word


def test_lock_dir_default_in_help_is_the_one_used() -> None:
    from libcluster import locks

    assert f"(default: {locks.DEFAULT_FILE_DIR})" in cli.EPILOG


def test_config_file_from_the_environment_when_no_c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COOKBOOK_CONFIG", str(tmp_path / "from-env.yaml"))
    assert cli.main(["-l"]) == 1
    assert f"cannot read configuration file {tmp_path / 'from-env.yaml'}" in capsys.readouterr().err
    assert cli.main(["-c", str(tmp_path / "given.yaml"), "-l"]) == 1
    assert f"cannot read configuration file {tmp_path / 'given.yaml'}" in capsys.readouterr().err


def test_global_options_stop_at_the_cookbook_name(monkeypatch: pytest.MonkeyPatch) -> None:
    args = cli.build_parser().parse_args(["-d", "sre.ganeti.makevm", "-d", "--verbose", "-c", "x"])
    assert (args.dry_run, args.verbose, args.cookbook) == (True, False, "sre.ganeti.makevm")
    assert args.cookbook_args == ["-d", "--verbose", "-c", "x"]


@pytest.mark.parametrize("argv", [["--dry"], ["--bogus", "top"]])
def test_unknown_or_abbreviated_global_options_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_missing_config_file_exits_1_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["-c", str(tmp_path / "nope.yaml"), "top"]) == 1
    assert f"cannot read configuration file {tmp_path / 'nope.yaml'}" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["demo"], ["demo/ganeti"], []])
def test_a_group_without_terminal_fails_cleanly(cookbook: Callable[..., int], capsys: pytest.CaptureFixture[str],
                                                args: list[str]) -> None:
    assert cookbook(*args) == 98
    err = capsys.readouterr().err
    assert "there is no terminal for a menu: name a cookbook" in err
    assert "Traceback" not in err


def test_menu_browses_runs_with_arguments_and_shows_status(cookbook: Callable[..., int], env: Env,
                                                           terminal: Callable[[str], None],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    # demo entries in order: demo.ganeti, demo.hello, demo.module_api, demo.multiple.CookbookA, ...
    terminal("2 world --exit-code 4\n1\nb\n9\nh\nq\n")
    assert cookbook("demo") == 4
    out = capsys.readouterr().out
    assert "== demo: Demo cookbooks of the runner tests [Demo Team] ==" in out
    assert "  2. [NOTRUN] demo.hello: Say hello to someone" in out
    assert "  2. [FAIL] demo.hello: Say hello to someone" in out
    assert "  1. [0/1] demo.ganeti: Ganeti demo cookbooks" in out
    assert "== demo.ganeti: Ganeti demo cookbooks [Infrastructure Foundations] ==" in out
    assert "Invalid choice '9'" in out
    assert "NUMBER [ARGS...]" in out
    assert [record["argv"] for record in env.records()] == [["world", "--exit-code", "4"]]


def test_console_script_runs_a_cookbook(env: Env) -> None:
    result = subprocess.run([str(COOKBOOK), "-c", str(env.config), "-d", "demo.hello", "world"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "DRY-RUN END (PASS) - Cookbook demo.hello (exit_code=0) for world" in result.stderr
    assert env.records()[0]["dry_run"] is True
    result = subprocess.run([str(COOKBOOK), "-c", str(env.config), "broken.failing", "--mode", "return", "--code", "7"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 7


def test_an_interrupt_rolls_back_a_run_started_with_sigint_ignored(env: Env, tmp_path: Path) -> None:
    # What a shell without job control (`&`, nohup, CI) hands to its background commands.
    with subprocess.Popen([str(COOKBOOK), "-c", str(env.config), "-y", "chatops.slow", "--state", str(tmp_path),
                           "--steps", "600", "--step-seconds", "0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) as process:
        deadline = time.monotonic() + 30
        while not (tmp_path / "change").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "change").exists()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 97, stderr
    assert not (tmp_path / "change").exists() and (tmp_path / "rolled-back").exists()
