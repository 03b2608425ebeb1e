"""The pure parts of Ganeti undo on recorded RAPI answers (Ganeti 3.0.2), and which lost answers are "maybe"."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from libcluster.errors import is_answer_lost
from libcluster.ganeti.inverse import DEFAULT, added_tags, modify_values
from libcluster.ganeti.rapi import RapiAnswerLostError, RapiClient, RapiTimeoutError
from tests.unit.ganeti.ganeti_replay import RO, RW, URL


def _instance(transcript: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(next(e["response"] for e in transcript if e.get("path") == "/2/instances/inst1.gl.test"
                     and e.get("method") == "GET" and e.get("status") == 200))


def test_modify_keeps_the_instances_own_old_values_and_memory_as_maxmem_and_minmem(
        transcript: list[dict[str, Any]]) -> None:
    instance = _instance(transcript)
    assert instance["custom_beparams"] == {"minmem": 128, "maxmem": 128, "vcpus": 1}
    old, new = modify_values(instance, {"beparams": {"memory": 256, "vcpus": 2}, "hvparams": {"kernel_args": "ro"},
                                        "os_name": "debootstrap"})
    assert old == {"beparams": {"vcpus": 1, "maxmem": 128, "minmem": 128}, "hvparams": {"kernel_args": DEFAULT},
                   "os_name": "noop"}
    assert new == {"beparams": {"vcpus": 2, "maxmem": 256, "minmem": 256}, "hvparams": {"kernel_args": "ro"},
                   "os_name": "debootstrap"}
    json.dumps([old, new])


def test_modify_of_disks_nics_or_template_has_no_undo(transcript: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match="disk_template, disks"):
        modify_values(_instance(transcript), {"disks": [["add", -1, {"size": 1024}]], "disk_template": "plain",
                                              "beparams": {"vcpus": 2}})


def test_only_tags_not_there_before_are_the_writes_to_remove() -> None:
    assert added_tags(["a", "b"], ["b", "c", "c", "d"]) == ["c", "d"]


class _Failing(BaseAdapter):
    """Raises one requests error for every request (the network level, nothing else faked)."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.sent = 0

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent += 1
        raise self.error

    def close(self) -> None:
        pass


def test_a_write_whose_answer_was_lost_is_answer_lost_and_not_retried() -> None:
    adapter = _Failing(requests.ReadTimeout("read timed out"))
    rapi = RapiClient(URL, read_write=RW, read_only=RO, ca_file=None, timeout=1, adapter=adapter, sleep=lambda _: None)
    with pytest.raises(RapiAnswerLostError) as lost:
        rapi.submit("POST", "/2/instances", body={"name": "x"})
    assert is_answer_lost(lost.value) and adapter.sent == 1


def test_a_write_that_could_not_connect_is_retried_and_not_answer_lost() -> None:
    adapter = _Failing(requests.exceptions.ConnectTimeout("connect timed out"))
    rapi = RapiClient(URL, read_write=RW, read_only=RO, ca_file=None, timeout=1, adapter=adapter, sleep=lambda _: None)
    with pytest.raises(RapiTimeoutError) as failed:
        rapi.submit("POST", "/2/instances", body={"name": "x"})
    assert not is_answer_lost(failed.value) and adapter.sent == 4
