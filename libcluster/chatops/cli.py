"""``cookbook-chatops``: serve the chat front doors, check their configuration, or probe the IRC bot."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from libcluster import config
from libcluster.chatops import settings as chatops_settings
from libcluster.errors import ConfigError
from libcluster.redact import RedactingFilter

logger = logging.getLogger(__name__)

STOP_GRACE = 120.0
"""Seconds a stopping service waits for interrupted runs to roll back."""

DESCRIPTION = """\
Run cookbooks from chat, through the same `cookbook` runner, locks, logs and audit as the terminal.

Two front doors share one core: an IRC bot in the configured channels, and a Slack-compatible
slash-command HTTP endpoint (Slack, Mattermost, Rocket.Chat). In chat:

  !cookbook list [PREFIX]       cookbooks, with what you may do with each
  !cookbook [-d] NAME ARGS...   run NAME with ARGS (-d: dry-run); NAME -h shows its help
  !cookbook status [ID]         one run, or every active run you may see
  !cookbook log ID              where the full output is, and its last lines
  !cookbook cancel ID           interrupt a run (SIGINT: it rolls back) or drop it from the queue
  !approve ID, !deny ID         decide on someone else's real run that needs an approval
  !help                         this list
With a slash command, the same without the "!": /cookbook list, /cookbook approve ID, ...

ARGS are split with shell rules into a list and given to the cookbook as is: never to a shell.
Control characters (NUL, newlines) are refused. The cookbook's own parser checks ARGS before
anything else happens. Permissions come from chatops.people and chatops.roles: a role may run
cookbook patterns for real, in dry-run only, and approve them. A real run of a cookbook matching
chatops.need_approval waits until another person with the approve right approves it. Runs wait
in one queue (chatops.max_running at once, chatops.max_per_user per person) and run as
`cookbook -c CONFIG -y [-d] NAME ARGS...`: prompts needing a typed answer fail the run with
their message. Progress (START/END, job log lines, the summary) goes to the channel, paced.
status and log answer known people only, about their own runs, runs asked in the same channel
and runs of cookbooks they may approve."""

EPILOG = f"""\
commands:
  serve    (default) connect the IRC bot and/or open the HTTP endpoint; run until SIGTERM or
           SIGINT, then refuse new requests, interrupt running cookbooks (they roll back) and
           wait up to {STOP_GRACE:.0f}s for them
  check    read the chatops section, print the doors, people and roles (no secrets), and exit
  probe    join the first IRC channel as a throwaway nick, say COMMAND (default "!help"), and
           wait for the bot's answer: a health check for monitoring

configuration (section chatops of CONFIG):
  state_dir            runs/ID.log, the full output of each run (default LOGS/chatops)
  max_running, max_queued, max_per_user, approval_timeout, max_pending_lines
  need_approval        cookbook name patterns whose real runs need an approval
  roles.NAME           run / dry_run / approve: lists of cookbook name patterns (fnmatch)
  people.NAME          identities (irc:NICK!USER@HOST mask, irc-account:NAME, slack:USER_ID,
                       mattermost:USER_ID) and roles; a person with the approve right needs
                       account identities only (refused at start otherwise): slack:, mattermost:
                       (with http.mattermost_approvers: true), irc-account: (authentication: services)
                       or irc:*!LOGIN@* (authentication: pam), IRC ones only with irc.tls on
  irc                  host, port (6697; 6667 with tls: false), tls (default true: the server's
                       certificate is verified), ca_file, nick, channels, password,
                       authentication (none, pam or services), flood_burst, flood_interval
  http                 listen, port, path, slack_signing_secret and/or mattermost_token,
                       response_url_prefixes, post_interval, max_posts, timeout (silent seconds),
                       request_deadline (seconds in all), max_connections, mattermost_approvers
  The module libcluster/chatops/settings.py shows a complete example.

audit:
  Each run's audit record (audit_log) has origin "chat", requester, approver and channel; the
  runner's logs, locks and server admin log name the requester as the operator (SUDO_USER).

exit codes:
  0   stopped cleanly (serve), configuration valid (check), the bot answered (probe)
  1   configuration error, or the probe got no answer in time
  2   invalid command line

examples:
  cookbook-chatops -c /etc/ganeti-cookbooks/config.yaml check
  cookbook-chatops -c /etc/ganeti-cookbooks/config.yaml serve
  cookbook-chatops -c /etc/ganeti-cookbooks/config.yaml probe --timeout 5
"""


def build_parser() -> argparse.ArgumentParser:
    """The options and commands of ``cookbook-chatops``."""
    parser = argparse.ArgumentParser(prog="cookbook-chatops", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("-c", "--config-file", default=config.DEFAULT_CONFIG_PATH, metavar="CONFIG",
                        help=f"configuration file (default: {config.DEFAULT_CONFIG_PATH})")
    parser.add_argument("-v", "--verbose", action="store_true", help="log DEBUG messages")
    parser.add_argument("command", nargs="?", choices=("serve", "check", "probe"), default="serve",
                        help="what to do (default: serve)")
    parser.add_argument("probe_command", nargs="?", default="!help", metavar="COMMAND",
                        help='probe only: what to say in the channel (default: "!help")')
    parser.add_argument("--timeout", type=float, default=10.0, help="probe only: seconds to wait (default: 10)")
    return parser


@contextlib.contextmanager
def _logging(verbose: bool) -> Iterator[None]:
    """Timestamped, secret-masked log lines on stderr while the command runs."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in ("urllib3", "requests", "irc.client"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def check(settings: chatops_settings.ChatopsSettings) -> int:
    """Print what the configuration sets up, without secrets."""
    if settings.irc:
        transport = "TLS, certificate verified" if settings.irc.tls else "plain text (tls: false)"
        print(f"irc: {settings.irc.nick} on {settings.irc.host}:{settings.irc.port} ({transport}) in "
              f"{', '.join(settings.irc.channels)}; authentication {settings.irc.authentication}")
    if settings.http:
        proofs = [name for name, value in (("Slack signatures", settings.http.slack_signing_secret),
                                           ("Mattermost token", settings.http.mattermost_token)) if value]
        print(f"http: {settings.http.listen}:{settings.http.port}{settings.http.path} ({', '.join(proofs)})")
    for person in settings.people:
        print(f"person {person.name}: roles {', '.join(role.name for role in person.roles) or 'none'}; "
              f"{len(person.identities)} identities")
    print(f"need approval: {', '.join(settings.need_approval) or 'nothing'}; runs in {settings.state_dir}")
    return 0


def serve(root: config.Section, settings: chatops_settings.ChatopsSettings, config_path: Path) -> int:
    """Run the front doors until SIGTERM/SIGINT, then stop the core (interrupting runs) and the doors."""
    from libcluster.chatops.argcheck import cookbook_dirs
    from libcluster.chatops.core import Chatops

    core = Chatops(settings, config_path.resolve(), cookbook_dirs(root))
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    bot = server = None
    if settings.http:
        from libcluster.chatops.slash import SlashServer

        server = SlashServer(core, settings.http)
        threading.Thread(target=server.serve_forever, name="chatops-http", daemon=True).start()
        logger.info("Slash commands on http://%s:%d%s", *server.server_address[:2], settings.http.path)
    if settings.irc:
        from libcluster.chatops.irc_bot import ChatopsBot

        bot = ChatopsBot(core, settings.irc)
        threading.Thread(target=bot.serve, name="chatops-irc", daemon=True).start()
    stopping.wait()
    logger.info("Stopping: no new requests; running cookbooks are interrupted and roll back")
    if server is not None:
        server.shutdown()
    core.close(STOP_GRACE)
    if bot is not None:
        bot.stop()
        time.sleep(0.5)  # let the QUIT go out
    return 0


def probe(settings: chatops_settings.ChatopsSettings, command: str, timeout: float) -> int:
    """Say command in the first IRC channel and wait for the bot to answer this probe's nick."""
    import irc.client

    from libcluster.chatops.probe import IrcProbe

    if settings.irc is None:
        logger.error("No chatops.irc section: nothing to probe")
        return 1
    channel, nick = settings.irc.channels[0], f"probe-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    try:
        client = IrcProbe(settings.irc.host, settings.irc.port, nick, timeout=timeout, tls=settings.irc.tls)
        try:
            client.join(channel)
            mark = client.say(channel, command)
            answer = client.expect(f"^{nick}: ", after=mark)
        finally:
            client.close()
    except (OSError, TimeoutError, irc.client.IRCError) as exc:
        logger.error("No answer from the bot in %s: %s", channel, exc)
        return 1
    print(f"{answer.nick} answered in {answer.at - started:.2f}s: {answer.text}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cookbook-chatops``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    with _logging(args.verbose):
        try:
            root = config.load(args.config_file)
            settings = chatops_settings.load(root)
        except ConfigError as exc:
            logger.error("%s", exc)
            return 1
        if args.command == "check":
            return check(settings)
        if args.command == "probe":
            return probe(settings, args.probe_command, args.timeout)
        return serve(root, settings, Path(args.config_file))


if __name__ == "__main__":
    sys.exit(main())
