"""Check a chat request's arguments with the cookbook's own parser, without running anything.

Run by the service in a subprocess (``python -m libcluster.chatops.argcheck -c CONFIG -- NAME ARGS...``)
so that cookbook modules are imported fresh and never into the long-running service. It loads
the cookbook through the runner's discovery, builds its parser exactly as the runner does
(tunables included), parses, and prints one JSON object: ``exit_code`` (0 valid, 95 parser broken,
96 invalid, 98 unknown cookbook) and ``message`` (argparse's output, e.g. usage and error, or help).
No lock, log file, audit record or SAL line is written.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from libcluster import audit, config, interactive, locks
from libcluster.context import Context, Session
from libcluster.cookbook import EXIT_ARGPARSER_FAILED, EXIT_ARGS_FAILED, EXIT_NOT_FOUND
from libcluster.errors import ConfigError
from libcluster.runner import discovery, execute


def cookbook_dirs(root: config.Section) -> list[Path]:
    """The configured ``cookbooks_base_dirs`` (the runner checks them again when it runs)."""
    dirs = root.list("cookbooks_base_dirs")
    if not dirs or not all(isinstance(item, str) and item for item in dirs):
        raise ConfigError(f"{root.source}: key 'cookbooks_base_dirs' must be a non-empty list of directories")
    return [Path(item) for item in dirs]


def _inert_session(root: config.Section, dirs: list[Path]) -> Session:
    """A dry-run session with locks disabled and the audit log on /dev/null: parsing changes nothing."""
    return Session(config=root, base_dirs=dirs, logs_dir=Path(root.str("logs_base_dir")), dry_run=True, verbose=False,
                   user="chatops-argcheck", origin={"origin": "chat"},
                   prompter=interactive.Prompter(assume_yes=False),
                   locks=locks.from_config(root, owner="chatops-argcheck", dry_run=True, enabled=False),
                   audit=audit.AuditLog(os.devnull))


def check(config_path: str, name: str, argv: list[str]) -> dict[str, Any]:
    """Parse argv with cookbook name's parser; the result printed by main()."""
    root = config.load(config_path)
    dirs = cookbook_dirs(root)
    output = io.StringIO()  # whatever the cookbook prints (argparse usage, errors, help) is the message
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        try:
            loaded = discovery.load(dirs, name)
        except (discovery.CookbookNotFound, discovery.CookbookLoadError) as exc:
            return {"exit_code": EXIT_NOT_FOUND, "message": str(exc)}
        try:
            cookbook = loaded.cls(Context(_inert_session(root, dirs), loaded.name, "argcheck"))
            parser = cookbook.argument_parser()
            execute.prepare_parser(cookbook, parser, loaded.name, loaded.owner_team)
        except Exception as exc:  # noqa: BLE001 - cookbook code may raise anything; the runner says 95 too
            return {"exit_code": EXIT_ARGPARSER_FAILED,
                    "message": f"the argument parser of {loaded.name} cannot be built: {type(exc).__name__}: {exc}"}
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            valid = exc.code in (0, None)  # -h: the help was printed
            return {"exit_code": 0 if valid else EXIT_ARGS_FAILED, "message": output.getvalue(), "help": valid}
    return {"exit_code": 0, "message": ""}


def main(argv: Sequence[str] | None = None) -> int:
    """Print the check's JSON; exit 0 when it could be done (the verdict is in the JSON), 1 on a config error."""
    parser = argparse.ArgumentParser(prog="python -m libcluster.chatops.argcheck", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config-file", required=True, metavar="CONFIG")
    parser.add_argument("cookbook", metavar="COOKBOOK")
    parser.add_argument("cookbook_args", nargs=argparse.REMAINDER, metavar="ARGS")
    args = parser.parse_args(argv)
    try:
        result = check(args.config_file, args.cookbook, args.cookbook_args)
    except ConfigError as exc:
        print(json.dumps({"exit_code": 1, "message": str(exc)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
