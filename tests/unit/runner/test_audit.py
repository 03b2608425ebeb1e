"""The audit log: origin from the environment, masked arguments (escaped secrets too), whole lines under concurrent
appends, and a new file after the old one was rotated away."""

from __future__ import annotations

import json
import logging
import multiprocessing
from pathlib import Path

import pytest

from libcluster import redact
from libcluster.audit import AuditError, AuditLog, origin_from_env, redact_argv
from libcluster.errors import ConfigError
from libcluster.journal import Journal


def test_origin_defaults_to_terminal() -> None:
    assert origin_from_env({}) == {"origin": "terminal"}
    assert origin_from_env({"COOKBOOK_ORIGIN": ""}) == {"origin": "terminal"}


def test_chat_origin_needs_a_requester() -> None:
    assert origin_from_env({"COOKBOOK_ORIGIN": "chat", "COOKBOOK_REQUESTER": "dave"}) == {
        "origin": "chat", "requester": "dave", "approver": "", "channel": ""}
    with pytest.raises(ConfigError, match="COOKBOOK_REQUESTER"):
        origin_from_env({"COOKBOOK_ORIGIN": "chat"})
    with pytest.raises(ConfigError, match="expected one of terminal, chat"):
        origin_from_env({"COOKBOOK_ORIGIN": "cron"})


def test_redact_argv_masks_secret_options_and_registered_secrets() -> None:
    redact.register("registered-secret-42")
    assert redact_argv(["vm1", "--token", "abc", "--api-key=xyz", "--name", "registered-secret-42", "--password"]) == [
        "vm1", "--token", "*****", "--api-key=*****", "--name", "*****", "--password"]


def _append(path: str, writer: int, count: int) -> None:
    log = AuditLog(path)
    for number in range(count):
        log.write_line(json.dumps({"writer": writer, "number": number, "padding": "x" * 300_000}))


def test_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.jsonl"
    processes = [multiprocessing.get_context("fork").Process(target=_append, args=(str(path), writer, 25))
                 for writer in range(6)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [process.exitcode for process in processes] == [0] * 6
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted((r["writer"], r["number"]) for r in records) == [(w, n) for w in range(6) for n in range(25)]
    assert path.stat().st_mode & 0o777 == 0o640


def test_unopenable_audit_log_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(AuditError, match=f"cannot open the audit log {tmp_path}/file/audit.jsonl"):
        AuditLog(tmp_path / "file" / "audit.jsonl")


def test_a_record_after_rotation_goes_to_a_new_file_at_the_path(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.write_line('{"id": "before"}')
    path.rename(tmp_path / "audit.jsonl.1")  # logrotate without copytruncate
    log.write_line('{"id": "after"}')
    assert [json.loads(line)["id"] for line in (tmp_path / "audit.jsonl.1").read_text().splitlines()] == ["before"]
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["after"]
    assert path.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("secret", ['pa"ss-word-1', "back\\slash-2", "n\u00e4ive-s\u00e9cret-3", "tab\tand\nnewline-4",
                                    "\u2603-snow\u00a0man-5"])
def test_escaped_secrets_are_masked_in_the_line(tmp_path: Path, secret: str) -> None:
    redact.register(secret)
    path = tmp_path / "audit.jsonl"
    Journal("run1", AuditLog(path), None, dry_run=False).end(
        {"argv": ["--name", f"x{secret}y"], "changes": [{"detail": {"key": secret, secret: 1}}],
         "path": Path(f"/tmp/{secret}")})
    line = path.read_bytes().decode("utf-8")
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
             secret.encode("unicode_escape").decode("ascii"), repr(secret)[1:-1]}
    assert not [form for form in forms if form in line]
    record = json.loads(line)
    assert record["argv"] == ["--name", "x*****y"] and record["changes"] == [{"detail": {"key": "*****", "*****": 1}}]
    assert record["path"] == "/tmp/*****"


def test_an_escaped_secret_is_masked_in_log_messages(caplog: pytest.LogCaptureFixture) -> None:
    secret = "it's-a\\back\u00e9slash-6"
    redact.register(secret)
    logger = logging.getLogger("test.redact")
    logger.addFilter(redact.RedactingFilter())
    with caplog.at_level(logging.INFO, logger="test.redact"):
        logger.info("value %r, json %s, ascii %a", secret, json.dumps({"k": secret}), secret)
    message = caplog.records[-1].getMessage()
    assert message == 'value "*****", json {"k": "*****"}, ascii "*****"'
