"""Add Ganeti cluster tags one by one (each journaled with this cookbook's own undo), then sleep and exit.

The journal lab tests SIGKILL it after its N-th intent line, or let it fail (--fail) so that the runner
rolls it back. With --library the tags are added by the Ganeti client (``add_tags``), which journals
them with its own undo. The undo removes a tag unless a tag ``TAG-keep`` is on the cluster: someone else wants
it kept, and the undo refuses (a real object left behind, named by exit 93).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Mapping
from typing import Any

from libcluster.context import Context
from libcluster.errors import LibclusterError
from libcluster.ganeti.jobs import Job
from libcluster.undo import Undo

NAME = "journaltest.tags"


def argument_parser() -> argparse.ArgumentParser:
    """--cluster, the tag prefix, how many tags, how long to sleep after them, and whether to fail."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--prefix", required=True, help="tags PREFIX-0, PREFIX-1, ...")
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds to sleep after the tags")
    parser.add_argument("--fail", action="store_true", help="return 1 after the sleep (the runner rolls back)")
    parser.add_argument("--library", action="store_true", help="add them with GanetiCluster.add_tags and its undo")
    return parser


def _tag_job(ctx: Context, cluster: str, method: str, tag: str) -> int:
    """Add (PUT) or remove (DELETE) one cluster tag through RAPI and wait for its job; the job id."""
    client = ctx.ganeti(cluster)
    job_id = client.rapi.submit(method, "/2/tags", params={"tag": [tag]})
    Job(client.rapi, job_id, description=f"tag {tag}", default_timeout=120).wait()
    return job_id


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Add the tags, each between an intent and a result line, then sleep."""
    for number in range(args.count):
        tag = f"{args.prefix}-{number}"
        if args.library:
            ctx.ganeti(args.cluster).add_tags("cluster", None, [tag]).wait()
            continue
        undo = Undo("cookbook", "tag-remove", tag, {"cookbook": NAME, "cluster": args.cluster, "tag": tag,
                                                     "kind": "ganeti cluster tag"})
        with ctx.changes.writing("ganeti", "test-tag-add", tag, undo=undo, cluster=args.cluster) as pending:
            if not ctx.dry_run:
                pending.learn(job_id=_tag_job(ctx, args.cluster, "PUT", tag))
    time.sleep(args.sleep)
    return 1 if args.fail else 0


def _wait_unfinished(ctx: Context, cluster: str, tag: str) -> None:
    """Wait for the unfinished jobs adding or removing tag: a killed run's write may still be queued or running."""
    client = ctx.ganeti(cluster)
    for job in client.rapi.get("/2/jobs", params={"bulk": 1}):
        if job.get("status") in ("queued", "waiting", "running") and any(
                tag in (op.get("tags") or []) for op in job.get("ops") or []):
            with contextlib.suppress(LibclusterError):
                Job(client.rapi, int(job["id"]), description=f"tag {tag}", default_timeout=120).wait()


def undo(ctx: Context, action: str, args: Mapping[str, Any]) -> str:
    """Remove the tag (after any unfinished job on it): absent if it is gone, refused if TAG-keep is there."""
    if action != "tag-remove":
        raise ValueError(f"unknown undo action {action}")
    tag, cluster = str(args["tag"]), str(args["cluster"])
    _wait_unfinished(ctx, cluster, tag)
    tags = ctx.ganeti(cluster).tags("cluster")
    if tag not in tags:
        return "absent"
    if f"{tag}-keep" in tags:
        raise RuntimeError(f"tag {tag}-keep asks to keep it: not removed")
    _tag_job(ctx, cluster, "DELETE", tag)
    return "undone"
