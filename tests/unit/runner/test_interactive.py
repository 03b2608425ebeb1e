"""Prompts: go/abort, -y for confirmations only, and clean failures without a terminal."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable

import pytest
from tests.unit.runner.runner_env import Env

from libcluster import interactive
from libcluster.interactive import AbortError, InputError, Prompter


def test_yes_confirms_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(interactive, "is_terminal", lambda: False)
    Prompter(assume_yes=True).confirm("Proceed?")


def test_confirmation_without_terminal_fails_with_its_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(interactive, "is_terminal", lambda: False)
    with pytest.raises(InputError, match=r"no terminal to ask for a confirmation \(or run with -y\): Proceed\?"):
        Prompter(assume_yes=False).confirm("Proceed?")


@pytest.mark.parametrize("typed", ["go\n", "yes\nGO\ngo\n"])
def test_go_confirms(terminal: Callable[[str], None], capsys: pytest.CaptureFixture[str], typed: str) -> None:
    terminal(typed)
    Prompter(assume_yes=False).confirm("Reboot?")
    out = capsys.readouterr().out
    assert out.startswith('==> Reboot?\nType "go" to proceed or "abort" to interrupt the execution\n')
    assert out.count("Invalid answer") == typed.count("\n") - 1


@pytest.mark.parametrize(("typed", "error"), [("abort\n", AbortError), ("a\nb\nc\ngo\n", InputError), ("", InputError)])
def test_abort_bad_answers_and_end_of_input(terminal: Callable[[str], None], typed: str,
                                            error: type[Exception]) -> None:
    terminal(typed)
    with pytest.raises(error):
        Prompter(assume_yes=False).confirm("Reboot?")


def test_ask_input_checks_choices_and_validator(terminal: Callable[[str], None]) -> None:
    terminal("node3\nnode2\n")
    assert Prompter(assume_yes=False).ask_input("Which node?", choices=["node1", "node2"]) == "node2"

    def even(answer: str) -> None:
        if int(answer) % 2:
            raise ValueError(f"{answer} is odd")

    terminal("3\n4\n")
    assert Prompter(assume_yes=False).ask_input("An even number?", validator=even) == "4"


def test_yes_does_not_answer_free_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(interactive, "is_terminal", lambda: False)
    monkeypatch.setattr(sys, "stdin", io.StringIO("node1\n"))
    with pytest.raises(InputError, match=r"no terminal to ask for an answer: Which node\?"):
        Prompter(assume_yes=True).ask_input("Which node?", choices=["node1"])


def test_cookbook_confirmation_needs_a_terminal_or_yes(cookbook: Callable[..., int], env: Env,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert cookbook("prompts.confirm") == 99
    err = capsys.readouterr().err
    assert "InputError: no terminal to ask for a confirmation (or run with -y): Reboot vm1.example.org?" in err
    assert "Traceback" not in err
    assert env.records()[-1]["changes"] == []
    assert cookbook("-y", "prompts.confirm") == 0
    assert "==> Reboot vm1.example.org?: confirmed by -y" in env.log("prompts.confirm")
    assert env.records()[-1]["changes"][0]["action"] == "instance-reboot"


def test_cookbook_prompts_on_a_terminal_also_in_dry_run(cookbook: Callable[..., int], env: Env,
                                                        terminal: Callable[[str], None],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    terminal("go\n")
    assert cookbook("-d", "prompts.confirm") == 0
    assert "==> Reboot vm1.example.org?" in capsys.readouterr().out
    terminal("abort\n")
    assert cookbook("prompts.confirm") == 99
    assert "AbortError: aborted by the operator at: Reboot vm1.example.org?" in capsys.readouterr().err


def test_free_text_prompt_with_yes_still_needs_a_person(cookbook: Callable[..., int], terminal: Callable[[str], None],
                                                        env: Env) -> None:
    assert cookbook("-y", "prompts.ask") == 99
    terminal("node1\n")
    assert cookbook("-y", "prompts.ask") == 0
    assert "answer was node1" in env.log("prompts.ask")
