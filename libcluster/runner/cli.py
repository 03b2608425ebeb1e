"""The ``cookbook`` command line: global options, listing, menus, and running one cookbook."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from libcluster import audit, config
from libcluster.cookbook import EXIT_NOT_FOUND, EXIT_SETUP_FAILED
from libcluster.errors import ConfigError
from libcluster.runner import discovery, trust
from libcluster.runner.logs import Console

if TYPE_CHECKING:
    from libcluster.context import Session
    from libcluster.runner.catalog import Node

logger = logging.getLogger(__name__)

CONFIG_ENV = "COOKBOOK_CONFIG"
"""Environment variable naming the configuration file when -c is not given."""

USAGE = ("cookbook [-h] [-l] [--doctor] [--recover [RUN_ID]] [-c CONFIG] [-d] [-v] [-y] [--no-locks] "
         "[COOKBOOK] [ARGS...]")
"""The synopsis (argparse would render the cookbook's arguments as "...")."""

DESCRIPTION = """\
Run a cookbook: one audited operation on the Ganeti clusters (create a VM, drain a node, ...).

Every run takes the cookbook's lock, logs a START and an END line to the cookbook's log files
and to the server admin log (IRC), and journals itself in the audit log as it goes: a start
line (who, what, from where), an intent line before each change and a result line after it,
and an end line, the run's record: the exit code and every change made (Ganeti jobs, NetBox
objects, DNS records). When locks are in etcd the journal of a running run is kept there too.
When a run fails, its changes that have an undo are undone in reverse order; a run that was
killed is undone later with --recover, from this host or another one.
With -d nothing is changed: the cookbook reads what it needs and logs what it would do.

COOKBOOK is a dotted name (sre.ganeti.makevm) or a path below cookbooks/ (sre/ganeti/makevm.py).
A group name (sre.ganeti), or no name, opens a menu on a terminal. Everything after COOKBOOK
is passed to the cookbook: `cookbook sre.ganeti.makevm -h` shows the cookbook's own help."""

EPILOG = f"""\
exit codes:
  0       success
  1-89    the cookbook failed (its own code); 1 also when the runner cannot start:
          bad configuration, log directory or audit log not writable
  2       invalid global options
  93      the cookbook failed and its rollback failed too, or left objects behind (one
          "left behind: KIND NAME (id ID): ERROR" line each): `cookbook --recover RUN_ID` retries;
          with --recover RUN_ID: some changes could not be undone
  94      the cookbook refused to start (validation in get_runner failed)
  95      the cookbook's argument parser could not be built
  96      the cookbook's arguments are invalid
  97      interrupted with Ctrl+C (rollback was run)
  98      no such cookbook, it cannot be loaded, or a group was given without a terminal;
          with --recover: no journal of that run id
  99      the cookbook raised an exception, or its lock could not be acquired, or was lost (its
          lease not renewed for locks.ttl seconds: the run stopped before its next change and
          rolled back); with --recover: the run is still alive, its locks could not be taken, or
          "go" was not answered

environment:
  {CONFIG_ENV}    configuration file when no -c is given (else {config.DEFAULT_CONFIG_PATH});
                     sudo's default env_reset drops it, so `sudo cookbook` reads the default
  SUDO_USER          the operator recorded in logs, locks, SAL and audit (else the login user);
                     under sudo (SUDO_UID not 0) the configuration, the cookbook trees and their
                     folders must be changeable by root only, else the run stops with exit 1
  {audit.ORIGIN_ENV}    "terminal" (default) or "chat": who started the run, for the audit record
  {audit.CHAT_ENV['requester']} chat user who asked for the run (required with {audit.ORIGIN_ENV}=chat)
  {audit.CHAT_ENV['approver']}  chat user who approved it
  {audit.CHAT_ENV['channel']}   chat channel the request came from

files:
  {config.DEFAULT_CONFIG_PATH}
                     default configuration (-c, {CONFIG_ENV})
  cookbooks_base_dirs
                     directories holding a cookbooks/ tree (required)
  LOGS/GROUP/NAME.log, LOGS/GROUP/NAME-extended.log
                     INFO and DEBUG logs of each cookbook, LOGS being logs_base_dir
                     (required), e.g. LOGS/sre/ganeti/makevm.log; rotated by size
  audit_log          the runs' journals, JSON lines (start, lock, intent, result, undo, end,
                     recovered); a run's record is its end line (default: LOGS/{audit.DEFAULT_NAME})
  locks.etcd_prefix + journal/RUN_ID/NNNNNN
                     in etcd (when locks.etcd_url is set): the journal of each running run,
                     deleted at its end unless something was left behind, or once recovered
  locks.file_dir     file locks, when locks.etcd_url is not set (default: /var/lock/cookbooks)
  locks.etcd_ca_file CA that etcd's certificate is checked against (default: system CAs)
  sal                the server admin log on IRC (default: none)
                     config/config.example.yaml gives every key and its default
  ${{XDG_CACHE_HOME:-~/.cache}}/ganeti-cookbooks/catalog-*.json
                     titles read by -l and menus, refreshed when a cookbook file changes

examples:
  cookbook -l -v sre.ganeti              list the Ganeti cookbooks with their titles
  sudo cookbook --doctor                 check the configuration and the services it names
  cookbook sre.ganeti.makevm -h          help of one cookbook
  sudo cookbook -d sre.ganeti.makevm --cluster prod1 vm1    preview, change nothing
  sudo cookbook -y sre.ganeti.reboot-vm vm1.example.org     run, answering "go" to confirmations
  sudo cookbook --recover                list runs that died or left changes behind
  sudo cookbook -d --recover RUN_ID      show what recovering that run would undo
"""


def build_parser() -> argparse.ArgumentParser:
    """The global options of ``cookbook``; the cookbook's own arguments are left to its parser."""
    parser = argparse.ArgumentParser(prog="cookbook", usage=USAGE, description=DESCRIPTION, epilog=EPILOG,
                                     allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-l", "--list", action="store_true",
                        help="list the cookbooks as a tree (COOKBOOK filters by name prefix; -v adds titles and "
                        "owners) and exit")
    parser.add_argument("--doctor", action="store_true",
                        help="check the configuration and every service it names (RAPI, NetBox, DNS, etcd, IRC, "
                        "cumin to each master, file modes), one line each with a fix; exit 1 if one fails. "
                        "Changes nothing")
    parser.add_argument("--recover", nargs="?", const="", metavar="RUN_ID",
                        help="without RUN_ID: list the runs that died (a start and no end in the journal) or left "
                        "changes behind, with their changes and locks, and exit. With RUN_ID: take that run's locks, "
                        'confirm ("go"; -y answers) and undo its changes newest first (with -d: print the plan, '
                        "change nothing)")
    parser.add_argument("-c", "--config-file", default=os.environ.get(CONFIG_ENV) or config.DEFAULT_CONFIG_PATH,
                        metavar="CONFIG", help=f"configuration file (default: ${CONFIG_ENV}, else "
                        f"{config.DEFAULT_CONFIG_PATH})")
    parser.add_argument("-d", "--dry-run", action="store_true",
                        help="change nothing: read, check locks without taking them, log what would be done")
    parser.add_argument("-v", "--verbose", action="store_true", help="show DEBUG messages on the terminal")
    parser.add_argument("-y", "--yes", action="store_true",
                        help='answer "go" to confirmations (for automation); questions that need a typed '
                        "answer still need a person at a terminal")
    parser.add_argument("--no-locks", action="store_true",
                        help="take no locks (emergencies only, e.g. when etcd is down): concurrent runs are not "
                        "kept apart")
    parser.add_argument("cookbook", nargs="?", metavar="COOKBOOK", help="cookbook or group to run (or to list)")
    parser.add_argument("cookbook_args", nargs=argparse.REMAINDER, metavar="ARGS",
                        help="arguments of the cookbook")
    return parser


def operator() -> str:
    """The real operator: SUDO_USER when run through sudo, else the login user."""
    import getpass

    return os.environ.get("SUDO_USER") or getpass.getuser()


def _base_dirs(root: config.Section) -> list[Path]:
    dirs = root.list("cookbooks_base_dirs")
    if not dirs or not all(isinstance(item, str) and item for item in dirs):
        raise ConfigError(f"{root.source}: key 'cookbooks_base_dirs' must be a non-empty list of directories")
    return [Path(item) for item in dirs]


def _session(root: config.Section, args: argparse.Namespace, base_dirs: list[Path]) -> Session:
    """Everything a run needs; imported here so that listing does not pay for it."""
    from libcluster import interactive, journal, locks
    from libcluster.context import Session

    user = operator()
    host = os.uname().nodename  # what socket.gethostname() answers, without importing socket
    logs_dir = Path(root.str("logs_base_dir"))
    origin = audit.origin_from_env(os.environ)
    lock_service = locks.from_config(root, owner=f"{user}@{host} [{os.getpid()}]", dry_run=args.dry_run,
                                     enabled=not args.no_locks)
    if args.no_locks:
        logger.warning("Locks disabled with --no-locks: concurrent runs are not kept apart")
    sal = None
    if not args.dry_run and root.has("sal"):  # the IRC client (ssl, a thread) is imported only when configured
        from libcluster.sal import SAL

        sal = SAL.from_config(root, prefix=f"{user}@{host}")
    audit_log = audit.AuditLog(audit.path_from_config(root))
    mirror = journal.mirror_for(lock_service)  # a dry-run journal does not write it
    return Session(config=root, base_dirs=base_dirs, logs_dir=logs_dir, dry_run=args.dry_run, verbose=args.verbose,
                   user=user, origin=origin, prompter=interactive.Prompter(assume_yes=args.yes), locks=lock_service,
                   audit=audit_log, sal=sal, mirror=mirror, fence=lock_service.check_held)


def _tree(base_dirs: list[Path]) -> Node:
    """The catalog of every tree (cached titles), for listings, menus and suggestions; running one cookbook
    does not need it, nor its import."""
    from libcluster.runner import catalog

    return catalog.scan(base_dirs, catalog.default_cache_path(base_dirs))


def _not_found(base_dirs: list[Path], name: str, error: discovery.CookbookNotFound) -> int:
    import difflib

    names = [node.name for node in _tree(base_dirs).walk() if node.name]
    close = difflib.get_close_matches(name, names, n=3)
    logger.error("%s%s", error, f" (did you mean: {', '.join(close)}?)" if close else "")
    return EXIT_NOT_FOUND


def _recover(root: config.Section, args: argparse.Namespace, base_dirs: list[Path]) -> int:
    """``--recover``: list the runs to recover, or recover one."""
    from libcluster import recover

    if args.cookbook or args.list:
        logger.error("--recover takes a run id, not a cookbook nor -l: `cookbook --recover [RUN_ID]`")
        return 2
    session = _session(root, args, base_dirs)
    try:
        return recover.recover(session, args.recover) if args.recover else recover.list_runs(session)
    finally:
        if session.sal is not None:
            session.sal.close()


def _dispatch(args: argparse.Namespace) -> int:
    if args.doctor:
        from libcluster import doctor

        return doctor.run(args.config_file)
    root = config.load(args.config_file)
    base_dirs = _base_dirs(root)
    trust.check_elevated_run(Path(args.config_file), base_dirs)
    if args.recover is not None:
        return _recover(root, args, base_dirs)
    name = discovery.normalize(args.cookbook or "")
    if args.list:
        from libcluster.runner import listing

        lines = listing.render(_tree(base_dirs), name, verbose=args.verbose)
        if not lines:
            logger.error("No cookbook matches %r", name)
            return EXIT_NOT_FOUND
        print("\n".join(lines))
        return 0
    group = not name
    if name:
        try:
            group = discovery.find(base_dirs, name).kind == "group"
        except discovery.CookbookNotFound as exc:
            return _not_found(base_dirs, name, exc)
    from libcluster import interactive
    from libcluster.runner import execute

    if group and not interactive.is_terminal():
        what = f"{name} is a group of cookbooks" if name else "no COOKBOOK given"
        logger.error("%s and there is no terminal for a menu: name a cookbook (`%s` lists them)", what,
                     f"cookbook -l {name}".strip())
        return EXIT_NOT_FOUND
    session = _session(root, args, base_dirs)
    try:
        if group:
            from libcluster.runner.menu import run_menu

            tree = _tree(base_dirs)
            return run_menu(session, tree.find(name) or tree)
        return execute.run(session, name, args.cookbook_args)
    finally:
        if session.sal is not None:
            session.sal.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cookbook``; returns the exit code (see ``cookbook -h``)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Started in the background by a shell without job control (`&`, nohup, CI): SIGINT came in ignored,
        # yet an interrupt sent to a run (Ctrl-C relayed, chatops cancel) must still stop and roll it back.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["--complete"]:  # from the bash completion (packaging/bash-completion), not for people
        from libcluster.runner import complete

        options = [option for action in parser._actions for option in action.option_strings]
        return complete.main(words[1:], options, parser.get_default("config_file"))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    console = Console(verbose=args.verbose, dry_run=args.dry_run)
    try:
        return _dispatch(args)
    except (ConfigError, audit.AuditError) as exc:
        logger.error("%s", exc)
        return EXIT_SETUP_FAILED
    finally:
        console.close()


if __name__ == "__main__":
    sys.exit(main())
