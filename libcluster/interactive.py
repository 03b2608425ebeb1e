"""Prompts to the operator: confirmations and free-text answers, the same in dry-run and real runs.

``-y`` answers yes to confirmations only; a free-text question always needs a person. Without a
terminal (chat, cron, CI) a prompt that needs a person fails with a typed error naming the question.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from libcluster.errors import LibclusterError

logger = logging.getLogger(__name__)

CONFIRM_HINT = 'Type "go" to proceed or "abort" to interrupt the execution'
"""The line under every confirmation."""
MAX_TRIES = 3
"""Invalid answers accepted before a prompt gives up."""


class InteractiveError(LibclusterError):
    """A prompt could not get an answer; the cookbook stops (non-zero) with this message."""


class AbortError(InteractiveError):
    """The operator answered "abort"."""


class InputError(InteractiveError):
    """No usable answer: no terminal, end of input, or too many invalid answers."""


def is_terminal() -> bool:
    """Whether a person can answer: both stdin and stdout are terminals."""
    return sys.stdin.isatty() and sys.stdout.isatty()


class Prompter:
    """Asks the operator on the terminal; knows whether ``-y`` was given."""

    def __init__(self, *, assume_yes: bool) -> None:
        """assume_yes: answer confirmations with "go" (``-y``)."""
        self.assume_yes = assume_yes

    def confirm(self, message: str) -> None:
        """Return when the operator types "go" (or -y was given); raise AbortError or InputError otherwise."""
        if self.assume_yes:
            logger.info("==> %s: confirmed by -y", message)
            return
        self._require_terminal(message, "a confirmation", hint=" (or run with -y)")
        print(f"==> {message}\n{CONFIRM_HINT}", flush=True)
        for _ in range(MAX_TRIES):
            answer = self._read()
            if answer == "go":
                logger.debug("==> %s: confirmed by the operator", message)
                return
            if answer == "abort":
                raise AbortError(f"aborted by the operator at: {message}")
            print(f"Invalid answer {answer!r}. {CONFIRM_HINT}", flush=True)
        raise InputError(f"too many invalid answers to: {message}")

    def ask_input(
        self,
        message: str,
        choices: Sequence[str] | None = None,
        validator: Callable[[str], object] | None = None,
    ) -> str:
        """Return the operator's answer: one of choices, and accepted by validator (which raises ValueError).

        Not answered by -y: a free-text prompt always needs a person at a terminal.
        """
        self._require_terminal(message, "an answer", hint="")
        options = f" [{'/'.join(choices)}]" if choices else ""
        print(f"==> {message}{options}", flush=True)
        for _ in range(MAX_TRIES):
            answer = self._read()
            problem = self._check(answer, choices, validator)
            if not problem:
                logger.debug("==> %s: answered %r", message, answer)
                return answer
            print(f"Invalid answer: {problem}. {message}{options}", flush=True)
        raise InputError(f"too many invalid answers to: {message}")

    @staticmethod
    def _check(answer: str, choices: Sequence[str] | None, validator: Callable[[str], object] | None) -> str:
        if not answer:
            return "empty"
        if choices and answer not in choices:
            return f"{answer!r} is not one of {', '.join(choices)}"
        if validator is not None:
            try:
                validator(answer)
            except ValueError as exc:
                return str(exc) or f"{answer!r} is not valid"
        return ""

    def _require_terminal(self, message: str, what: str, *, hint: str) -> None:
        if not is_terminal():
            raise InputError(f"no terminal to ask for {what}{hint}: {message}")

    @staticmethod
    def _read() -> str:
        line = sys.stdin.readline()
        if not line:
            raise InputError("end of input while waiting for an answer")
        return line.strip()
