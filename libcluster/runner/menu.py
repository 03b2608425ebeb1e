"""The interactive menu opened by ``cookbook GROUP`` (or no name) on a terminal: pick, pass arguments, run.

Rows show each entry's status this session: NOTRUN, PASS, FAIL or ERROR for a cookbook,
``[run/total]`` for a group.
"""

from __future__ import annotations

import shlex
import sys

from libcluster.context import Session
from libcluster.cookbook import EXIT_EXCEPTION, EXIT_INTERRUPTED
from libcluster.runner import execute
from libcluster.runner.catalog import Node

HELP = """Commands:
  NUMBER [ARGS...]  run that cookbook with ARGS, or open that group
  b                 back to the parent group
  q                 quit
  h                 this help"""
"""Shown by the h command."""


def status(node: Node, results: dict[str, int]) -> str:
    """A row's status: NOTRUN/PASS/FAIL/ERROR for a cookbook, ``run/total`` for a group."""
    if node.group:
        cookbooks = node.cookbooks()
        return f"{sum(1 for cookbook in cookbooks if cookbook.name in results)}/{len(cookbooks)}"
    if node.name not in results:
        return "NOTRUN"
    code = results[node.name]
    return "PASS" if code == 0 else "ERROR" if code in (EXIT_EXCEPTION, EXIT_INTERRUPTED) else "FAIL"


def _show(node: Node, entries: list[Node], results: dict[str, int]) -> None:
    print(f"== {node.name or 'cookbooks'}: {node.title} [{node.owner}] ==")
    for number, entry in enumerate(entries, 1):
        title = f": {entry.title}" if entry.title else ""
        print(f"{number:>3}. [{status(entry, results)}] {entry.name}{title}")
    print("Enter a number (with arguments for a cookbook), b (back), q (quit) or h (help):", flush=True)


def run_menu(session: Session, group: Node) -> int:
    """Browse from group until q or end of input; return the exit code of the last cookbook run (0 if none)."""
    stack = [group]
    last = 0
    while stack:
        node = stack[-1]
        entries = [node.children[name] for name in sorted(node.children)]
        _show(node, entries, session.results)
        line = sys.stdin.readline()
        if not line or line.strip() == "q":
            break
        try:
            words = shlex.split(line)
        except ValueError as exc:
            print(f"Invalid input: {exc}")
            continue
        if not words:
            continue
        if words[0] == "b":
            stack.pop()
        elif words[0] == "h":
            print(HELP)
        elif words[0].isdigit() and 1 <= int(words[0]) <= len(entries):
            entry = entries[int(words[0]) - 1]
            if entry.group:
                stack.append(entry)
            else:
                last = execute.run(session, entry.name, words[1:])
        else:
            print(f"Invalid choice {words[0]!r}; h for help")
    return last
