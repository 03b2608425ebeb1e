"""The NetBox client against real recorded NetBox 4.6.8 and 4.7.3 bodies, served under pynetbox by a fake transport.

The fake replaces only the socket level (`HTTPAdapter.send`), so pynetbox, the client's own
adapter (timeout, verify, counting) and error translation all run for real.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from requests.adapters import HTTPAdapter

from libcluster import audit
from libcluster.changes import ChangeLog
from libcluster.config import Section
from libcluster.journal import Journal
from libcluster.netbox import (
    NetBox,
    NetBoxAuthError,
    NetBoxConflict,
    NetBoxError,
    NetBoxFilterError,
    NetBoxIgnoredField,
    NetBoxNotFound,
    NetBoxReadOnly,
    NetBoxUnavailable,
    NetBoxValidationError,
)
from libcluster.undo import UndoStack

RW_TOKEN = "nbt_rwrwrwrwrwrw.0123456789abcdef0123456789abcdef01234567"
RO_TOKEN = "nbt_rorororororo.fedcba9876543210fedcba9876543210fedcba98"
VERSIONS = ("v4.6.8", "v4.7.3")

Handler = Callable[[str, dict[str, list[str]], Any], tuple[int, Any]]


class FakeNetBox:
    """Answers requests from routes (method, path) -> handler; records every request and the send() kwargs."""

    def __init__(self, base_url: str, api_version: str) -> None:
        """Serve base_url, announcing api_version in the API-Version header."""
        self.base = base_url
        self.api_version = api_version
        self.routes: dict[tuple[str, str], Handler] = {}
        self.calls: list[dict[str, Any]] = []

    def route(self, method: str, path: str, handler: Handler) -> None:
        """Answer method on /api/<path> with handler(method, query, body) -> (status, body)."""
        self.routes[(method, "/api/" + path)] = handler

    def send(self, adapter: HTTPAdapter, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """What HTTPAdapter.send does on the wire, answered from the routes."""
        url = urlsplit(request.url)
        query = parse_qs(url.query)
        body = json.loads(request.body) if request.body else None
        self.calls.append({"method": request.method, "path": url.path, "query": query, "body": body,
                           "headers": request.headers.copy(), "kwargs": kwargs})
        if url.path == "/api/":
            status, answer = 200, {"virtualization": f"{self.base}/api/virtualization/"}
        else:
            handler = self.routes.get((request.method, url.path))
            status, answer = handler(request.method, query, body) if handler else (404, {"detail": "Not found."})
        response = requests.Response()
        response.status_code = status
        response.reason = {200: "OK", 201: "Created", 204: "No Content"}.get(status, "Error")
        response._content = b"" if answer is None else json.dumps(answer).encode()
        response.headers["Content-Type"] = "application/json"
        response.headers["API-Version"] = self.api_version
        response.url = request.url
        response.request = request
        return response

    def writes(self) -> list[dict[str, Any]]:
        """Requests that would change NetBox."""
        return [call for call in self.calls if call["method"] in ("POST", "PATCH", "PUT", "DELETE")]


@pytest.fixture(params=VERSIONS)
def version(request: pytest.FixtureRequest) -> str:
    """Each recorded NetBox version."""
    return str(request.param)


@pytest.fixture
def recorded(recorded_dir: Path, version: str) -> Callable[[str], Any]:
    """Load one recorded body of the version (a fresh copy each time)."""
    folder = recorded_dir / "netbox" / version

    def load(name: str) -> Any:
        return json.loads((folder / name).read_text())

    return load


@pytest.fixture
def meta(recorded: Callable[[str], Any]) -> dict[str, Any]:
    """_meta.json: the ids and requests behind the recorded bodies."""
    return dict(recorded("_meta.json"))


@pytest.fixture
def fake(meta: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> FakeNetBox:
    """The fake server, wired under every HTTPAdapter of the test."""
    server = FakeNetBox(meta["base_url"], ".".join(meta["netbox_version"].split(".")[:2]))
    monkeypatch.setattr(HTTPAdapter, "send", lambda adapter, request, **kwargs: server.send(adapter, request, **kwargs))
    return server


def make_client(meta: dict[str, Any], *, read_write: bool = True, dry_run: bool = False,
                changes: ChangeLog | None = None, **extra: Any) -> NetBox:
    """A client on the recorded server's URL with test tokens."""
    config = Section({"url": meta["base_url"], "token": RW_TOKEN, "ro_token": RO_TOKEN, "timeout": 7,
                      "allow_insecure_http": True, **extra}, "netbox", "test")
    return NetBox(config, read_write=read_write, dry_run=dry_run, changes=changes or ChangeLog(dry_run=dry_run))


def fixed(status: int, body: Any) -> Handler:
    """A handler that always answers status and a copy of body."""
    return lambda method, query, sent: (status, copy.deepcopy(body))


def paged(objects: list[dict[str, Any]], url: str) -> Handler:
    """A list view over objects honouring limit and offset, with NetBox's next links."""
    def handler(method: str, query: dict[str, list[str]], sent: Any) -> tuple[int, Any]:
        limit = int(query.get("limit", ["50"])[0])
        offset = int(query.get("offset", ["0"])[0])
        page = objects[offset:offset + limit]
        more = offset + limit < len(objects)
        return 200, {"count": len(objects), "next": f"{url}?limit={limit}&offset={offset + limit}" if more else None,
                     "previous": None, "results": copy.deepcopy(page)}
    return handler


def test_tokens_read_write_and_dry_run_choose_the_right_one(fake: FakeNetBox, meta: dict[str, Any],
                                                           recorded: Callable[[str], Any]) -> None:
    fake.route("GET", "virtualization/virtual-machines/", fixed(200, recorded("virtual-machines_by_name.json")))
    expectations = [(True, False, RW_TOKEN), (True, True, RO_TOKEN), (False, False, RO_TOKEN), (False, True, RO_TOKEN)]
    for read_write, dry_run, token in expectations:
        make_client(meta, read_write=read_write, dry_run=dry_run).objects("vm", name=meta["ids"]["vm_name"])
        assert fake.calls[-1]["headers"]["authorization"] == f"Bearer {token}"


def test_get_vm_by_name_parses_the_recorded_body(fake: FakeNetBox, meta: dict[str, Any],
                                                 recorded: Callable[[str], Any]) -> None:
    fake.route("GET", "virtualization/virtual-machines/", fixed(200, recorded("virtual-machines_by_name.json")))
    vm = make_client(meta).get("vm", name=meta["ids"]["vm_name"], cluster_id=meta["ids"]["cluster"])
    assert vm["id"] == meta["ids"]["vm"]
    assert vm["primary_ip4"]["address"] == meta["ids"]["ip_addr"]
    assert fake.calls[-1]["query"]["name"] == [meta["ids"]["vm_name"]]
    assert fake.calls[-1]["query"]["cluster_id"] == [str(meta["ids"]["cluster"])]


def test_every_request_gets_timeout_and_verify_even_with_a_ca_bundle_in_the_environment(
        fake: FakeNetBox, meta: dict[str, Any], recorded: Callable[[str], Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/bundle.pem")
    fake.route("GET", "ipam/prefixes/", fixed(200, recorded("prefixes_by_prefix.json")))
    make_client(meta, ca_file="/etc/ssl/certs/lab-ca.pem").get("prefix", prefix=meta["files"]["prefixes_by_prefix.json"]
                                                               ["params"]["prefix"])
    assert fake.calls[-1]["kwargs"]["timeout"] == 7.0
    assert fake.calls[-1]["kwargs"]["verify"] == "/etc/ssl/certs/lab-ca.pem"


def test_unknown_filter_is_refused_before_any_request(fake: FakeNetBox, meta: dict[str, Any]) -> None:
    client = make_client(meta)
    with pytest.raises(NetBoxFilterError, match="unknown filter cluster_idd"):
        client.objects("vm", cluster_idd=3)
    assert fake.calls == []


def test_a_filter_netbox_ignored_is_detected_on_the_returned_objects(fake: FakeNetBox, meta: dict[str, Any],
                                                                     recorded: Callable[[str], Any]) -> None:
    # NetBox answered with its cluster-4 VM to a request for cluster 4+1000: it ignored the filter.
    fake.route("GET", "virtualization/virtual-machines/", fixed(200, recorded("virtual-machines_by_name.json")))
    with pytest.raises(NetBoxFilterError, match="does not match cluster_id"):
        make_client(meta).objects("vm", cluster_id=meta["ids"]["cluster"] + 1000)


def test_ip_filters_are_checked_by_address_semantics(fake: FakeNetBox, meta: dict[str, Any],
                                                     recorded: Callable[[str], Any]) -> None:
    fake.route("GET", "ipam/ip-addresses/", fixed(200, recorded("ip-addresses_by_virtual_machine_id.json")))
    client = make_client(meta)
    host = meta["ids"]["ip_addr"].split("/")[0]
    prefix = meta["files"]["prefixes_by_prefix.json"]["params"]["prefix"]
    found = client.objects("ip-address", address=host, parent=prefix, vminterface_id=meta["ids"]["iface"],
                           virtual_machine_id=meta["ids"]["vm"], dns_name__empty=False)
    assert [ip["id"] for ip in found] == [meta["ids"]["ip"]]
    assert fake.calls[-1]["query"]["dns_name__empty"] == ["false"]
    with pytest.raises(NetBoxFilterError, match="parent"):
        client.objects("ip-address", parent="203.0.113.0/24")
    with pytest.raises(NetBoxFilterError, match="vminterface_id"):
        client.objects("ip-address", vminterface_id=meta["ids"]["iface"] + 1)


def test_an_empty_value_list_matches_nothing_without_a_request(fake: FakeNetBox, meta: dict[str, Any]) -> None:
    assert make_client(meta).objects("vm", id=[]) == []
    assert make_client(meta).count("vm", id=[]) == 0
    assert fake.calls == []


def _many_vms(template: dict[str, Any], count: int) -> list[dict[str, Any]]:
    vms = []
    for index in range(count):
        vm = copy.deepcopy(template)
        vm["id"] = 1000 + index
        vm["name"] = f"vm{index}.lab.example"
        vms.append(vm)
    return vms


@pytest.mark.parametrize("threads", [1, 4])
def test_bulk_reads_grow_with_pages_not_objects(fake: FakeNetBox, meta: dict[str, Any],
                                                recorded: Callable[[str], Any], threads: int) -> None:
    template = recorded("virtual-machines_by_name.json")["results"][0]
    vms = _many_vms(template, 2345)
    url = f"{meta['base_url']}/api/virtualization/virtual-machines/"
    fake.route("GET", "virtualization/virtual-machines/", paged(vms, url))
    client = make_client(meta, page_size=500, threads=threads)
    found = client.objects("vm", cluster_id=template["cluster"]["id"])
    assert sorted(vm["id"] for vm in found) == [vm["id"] for vm in vms]
    pages = -(-len(vms) // 500)
    assert client.request_count == pages
    assert len(fake.calls) == pages


# One row of `vm_interface_list` as the lab's NetBox 4.7.3 answered INTERFACE_SELECTION.
GRAPHQL_ROW = {"id": "1", "name": "eth0", "virtual_machine": {"id": "1", "cluster": {"id": "3"}},
               "primary_mac_address": {"mac_address": "AA:01:00:00:00:01"}}


def test_graphql_lists_are_read_by_pages_until_an_empty_one(fake: FakeNetBox, meta: dict[str, Any]) -> None:
    rows = [{**GRAPHQL_ROW, "id": str(n)} for n in range(1, 8)]

    def answer(method: str, query: Any, sent: Any) -> tuple[int, Any]:
        offset, limit = sent["variables"]["offset"], sent["variables"]["limit"]
        return 200, {"data": {"vm_interface_list": rows[offset:offset + limit]}}

    fake.routes[("POST", "/graphql/")] = answer
    client = make_client(meta, page_size=3, read_write=False)
    found = client.graphql_list("vm_interface_list", "id name", filters="{virtual_machine: {cluster: {id: "
                                "{in_list: $clusters}}}}", variables={"clusters": ("[ID!]", ["3"])})
    assert found == rows and client.request_count == 4  # pages of 3, 3, 1, then the empty one
    first = fake.calls[0]
    assert first["headers"]["Authorization"] == f"Bearer {RO_TOKEN}"
    assert first["body"]["variables"] == {"clusters": ["3"], "offset": 0, "limit": 3}
    assert first["body"]["query"] == ("query($offset: Int!, $limit: Int!, $clusters: [ID!]) { vm_interface_list("
                                      "filters: {virtual_machine: {cluster: {id: {in_list: $clusters}}}}, "
                                      "pagination: {offset: $offset, limit: $limit}) { id name } }")


def test_graphql_errors_are_netbox_errors_without_the_token(fake: FakeNetBox, meta: dict[str, Any]) -> None:
    # NetBox 4.7.3's answer to a misspelt filter field (recorded from the lab).
    message = "Expected value of type 'VMInterfaceFilter' not to include unknown field 'virtual_machin'."
    unknown = {"data": None, "errors": [{"message": message, "locations": [{"line": 1, "column": 48}]}]}
    fake.routes[("POST", "/graphql/")] = fixed(200, unknown)
    client = make_client(meta)
    with pytest.raises(NetBoxError, match="POST /graphql/ vm_interface_list: Expected value of type 'VMInterfaceFilter"
                                          "' not to include unknown field 'virtual_machin'"):
        client.graphql_list("vm_interface_list", "id", filters="{virtual_machin: {}}", variables={})
    fake.routes[("POST", "/graphql/")] = fixed(403, {"detail": f"Invalid v2 token {RW_TOKEN}"})
    with pytest.raises(NetBoxAuthError) as caught:
        client.graphql_list("vm_interface_list", "id", filters="{}", variables={})
    assert RW_TOKEN not in str(caught.value)


def test_fields_limit_what_netbox_serialises_but_keep_what_the_checks_need(
        fake: FakeNetBox, meta: dict[str, Any], recorded: Callable[[str], Any]) -> None:
    fake.route("GET", "virtualization/virtual-machines/", fixed(200, recorded("virtual-machines_by_name.json")))
    make_client(meta).objects("vm", fields=["memory", "vcpus"], cluster_id=meta["ids"]["cluster"])
    assert fake.calls[-1]["query"]["fields"] == ["cluster,id,memory,name,vcpus"]


def test_a_long_value_list_is_split_into_few_requests(fake: FakeNetBox, meta: dict[str, Any],
                                                      recorded: Callable[[str], Any]) -> None:
    template = recorded("virtual-machines_by_name.json")["results"][0]
    vms = _many_vms(template, 450)

    def by_id(method: str, query: dict[str, list[str]], sent: Any) -> tuple[int, Any]:
        wanted = set(query["id"])
        page = [vm for vm in vms if str(vm["id"]) in wanted]
        return 200, {"count": len(page), "next": None, "previous": None, "results": page}

    fake.route("GET", "virtualization/virtual-machines/", by_id)
    client = make_client(meta)
    found = client.objects("vm", id=[vm["id"] for vm in vms])
    assert len(found) == len(vms)
    assert [len(call["query"]["id"]) for call in fake.calls] == [200, 200, 50]


def test_count_is_one_request(fake: FakeNetBox, meta: dict[str, Any], recorded: Callable[[str], Any]) -> None:
    template = recorded("virtual-machines_by_name.json")["results"][0]
    vms = _many_vms(template, 77)
    fake.route("GET", "virtualization/virtual-machines/",
               paged(vms, f"{meta['base_url']}/api/virtualization/virtual-machines/"))
    assert make_client(meta).count("vm", cluster_id=template["cluster"]["id"]) == len(vms)
    assert len(fake.calls) == 1 and fake.calls[0]["query"]["limit"] == ["1"]


@pytest.mark.parametrize("name, error, match", [
    ("error_400_vm_bad_status.json", NetBoxValidationError, "status: running is not a valid choice"),
    ("error_400_duplicate_ip_global.json", NetBoxValidationError, "Duplicate IP address found"),
    ("error_400_primary_ip_not_assigned.json", NetBoxValidationError, "is not assigned to this VM"),
])
def test_recorded_validation_errors_keep_netbox_message(fake: FakeNetBox, meta: dict[str, Any],
                                                        recorded: Callable[[str], Any], name: str,
                                                        error: type[Exception], match: str) -> None:
    request = meta["files"][name]
    path = request["path"].removeprefix("/api/")
    fake.route(request["method"], path, fixed(request["http_status"], recorded(name)))
    client = make_client(meta)
    kind = {"virtualization/virtual-machines/": "vm", "ipam/ip-addresses/": "ip-address"}
    with pytest.raises(error, match=match) as caught:
        if request["method"] == "POST":
            client.create(kind[path], [request["request_body"]])
        else:
            fake.route("PATCH", "virtualization/virtual-machines/", fixed(400, [recorded(name)]))
            fake.route("GET", "virtualization/virtual-machines/", fixed(200, recorded("virtual-machines_by_name.json")))
            client.update("vm", [{"id": meta["ids"]["vm"], **request["request_body"]}])
    assert caught.value.status == 400
    assert isinstance(caught.value.errors, (dict, list))


def test_a_bad_token_is_a_typed_error_without_the_token(fake: FakeNetBox, meta: dict[str, Any],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    fake.route("GET", "virtualization/virtual-machines/", fixed(403, {"detail": f"Invalid v2 token {RW_TOKEN}"}))
    fake.route("POST", "virtualization/virtual-machines/",
               fixed(403, {"detail": "You do not have permission to perform this action."}))
    caplog.set_level(logging.DEBUG)
    client = make_client(meta)
    with pytest.raises(NetBoxAuthError, match="refused the token") as caught:
        client.objects("vm", name="x")
    assert caught.value.status == 403
    assert RW_TOKEN not in str(caught.value) and RO_TOKEN not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    with pytest.raises(NetBoxAuthError, match="permission") as caught:
        client.create("vm", [{"name": "x", "cluster": 1}])
    assert RW_TOKEN not in str(caught.value)
    assert RW_TOKEN not in caplog.text and RO_TOKEN not in caplog.text


def test_not_found_conflict_and_unreachable_are_typed(fake: FakeNetBox, meta: dict[str, Any],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    client = make_client(meta)
    with pytest.raises(NetBoxNotFound):
        client.update("vm", [{"id": 999999, "memory": 1}])
    fake.route("GET", "ipam/prefixes/", fixed(200, {"count": 0, "next": None, "previous": None, "results": []}))
    with pytest.raises(NetBoxNotFound, match="no prefix matches"):
        client.get("prefix", prefix="203.0.113.0/24")
    fake.route("POST", f"ipam/prefixes/{meta['ids']['prefix']}/available-ips/",
               fixed(409, {"detail": "An insufficient number of IP addresses are available within prefix"}))
    with pytest.raises(NetBoxConflict, match="insufficient"):
        client.allocate_ip(meta["ids"]["prefix"], dns_name="x.lab.example")

    def refuse(adapter: HTTPAdapter, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        raise requests.ConnectionError(f"refused connecting to {request.url}")

    monkeypatch.setattr(HTTPAdapter, "send", refuse)
    with pytest.raises(NetBoxUnavailable, match="cannot reach NetBox"):
        client.objects("vm", name="x")


def test_read_only_client_refuses_writes_locally(fake: FakeNetBox, meta: dict[str, Any]) -> None:
    client = make_client(meta, read_write=False)
    with pytest.raises(NetBoxReadOnly, match="read-only"):
        client.create("vm", [{"name": "x"}])
    with pytest.raises(NetBoxReadOnly):
        client.delete("vm", [1])
    with pytest.raises(NetBoxReadOnly):
        client.allocate_ip(meta["ids"]["prefix"], dns_name="x.lab.example")
    assert fake.calls == []


def test_dry_run_records_writes_and_sends_none(fake: FakeNetBox, meta: dict[str, Any]) -> None:
    changes = ChangeLog(dry_run=True)
    client = make_client(meta, dry_run=True, changes=changes)
    planned = client.create("vm", [{"name": "new.lab.example", "cluster": meta["ids"]["cluster"], "status": "active"}])
    client.update("vm", [{"id": meta["ids"]["vm"], "memory": 4096}])
    client.delete("vm", [{"id": meta["ids"]["vm"], "name": meta["ids"]["vm_name"]}])
    client.release_ips([meta["ids"]["ip"]])
    assert fake.writes() == []
    assert planned[0]["id"] is None
    entries = changes.changes
    assert [entry.action for entry in entries] == ["vm-create", "vm-update", "vm-delete", "ip-address-release"]
    assert all(entry.dry_run and entry.system == "netbox" for entry in entries)
    assert entries[0].target == "new.lab.example" and entries[2].target == meta["ids"]["vm_name"]
    assert entries[1].detail == {"id": meta["ids"]["vm"], "fields": {"memory": 4096}}


def test_dry_run_next_free_ip_is_read_not_allocated(fake: FakeNetBox, meta: dict[str, Any],
                                                    recorded: Callable[[str], Any]) -> None:
    free = recorded("prefix_available-ips_limit5.json")
    fake.route("GET", f"ipam/prefixes/{meta['ids']['prefix']}/available-ips/",
               lambda method, query, sent: (200, free[:int(query["limit"][0])]))
    changes = ChangeLog(dry_run=True)
    client = make_client(meta, dry_run=True, changes=changes)
    ip = client.allocate_ip(meta["ids"]["prefix"], dns_name="new.lab.example", interface_id=meta["ids"]["iface"])
    assert ip["address"] == free[0]["address"] and ip["id"] is None
    assert fake.writes() == []
    assert [(call["method"], call["query"].get("limit")) for call in fake.calls] == [("GET", ["1"])]
    assert changes.changes[0].action == "ip-address-allocate"
    assert changes.changes[0].target == free[0]["address"]
    assert changes.changes[0].detail["fields"]["assigned_object_id"] == meta["ids"]["iface"]
    with pytest.raises(NetBoxConflict):
        client.allocate_ips(meta["ids"]["prefix"], [{"dns_name": f"n{i}.lab.example"} for i in range(len(free) + 1)])


def test_allocation_posts_a_list_and_checks_netbox_kept_each_field(fake: FakeNetBox, meta: dict[str, Any],
                                                                  recorded: Callable[[str], Any]) -> None:
    request = meta["files"]["prefix_available-ips_POST_201.json"]
    created = recorded("prefix_available-ips_POST_201.json")
    fake.route("POST", request["path"].removeprefix("/api/"), lambda method, query, sent: (201, [created] * len(sent)))
    changes = ChangeLog(dry_run=False)
    client = make_client(meta, changes=changes)
    [ip] = client.allocate_ips(meta["ids"]["prefix"], [request["request_body"]])
    assert ip["address"] == created["address"]
    assert fake.calls[-1]["body"] == [request["request_body"]]
    assert changes.changes[0].detail["id"] == created["id"]
    # The recorded answer has an empty dns_name: a dns_name sent and not kept must not pass silently.
    with pytest.raises(NetBoxIgnoredField, match="dns_name"):
        client.allocate_ips(meta["ids"]["prefix"], [{**request["request_body"], "dns_name": "kept.lab.example"}])


def test_bulk_writes_are_list_bodies_of_bulk_size(fake: FakeNetBox, meta: dict[str, Any],
                                                  recorded: Callable[[str], Any]) -> None:
    template = recorded("clusters_by_id.json")["results"][0]
    counter = iter(range(500, 600))

    def echo(method: str, query: dict[str, list[str]], sent: Any) -> tuple[int, Any]:
        return 201, [{**template, **item, "id": next(counter)} for item in sent]

    fake.route("POST", "virtualization/cluster-groups/", echo)
    fake.route("DELETE", "virtualization/cluster-groups/", fixed(204, None))
    changes = ChangeLog(dry_run=False)
    client = make_client(meta, bulk_size=2, changes=changes)
    created = client.create("cluster-group", [{"name": f"g{i}", "slug": f"g{i}"} for i in range(5)])
    client.delete("cluster-group", created)
    posts = [call for call in fake.calls if call["method"] == "POST"]
    deletes = [call for call in fake.calls if call["method"] == "DELETE"]
    assert [len(call["body"]) for call in posts] == [2, 2, 1]
    assert [call["body"] for call in deletes] == [[{"id": obj["id"]} for obj in created[i:i + 2]] for i in (0, 2, 4)]
    assert [entry.action for entry in changes.changes] == ["cluster-group-create"] * 5 + ["cluster-group-delete"] * 5


def test_set_macs_follows_the_netbox_version_and_drops_the_replaced_mac(
        fake: FakeNetBox, meta: dict[str, Any], recorded: Callable[[str], Any]) -> None:
    iface = recorded("vm-interfaces_by_virtual_machine_id.json")["results"][0]
    old, mac = "52:54:00:00:00:01", "52:54:00:12:34:56"

    def patch(method: str, query: dict[str, list[str]], sent: Any) -> tuple[int, Any]:
        answer = []
        for item in sent:
            obj = copy.deepcopy(iface)
            if "mac_address" in item:
                obj["mac_address"] = item["mac_address"].upper()
            if "primary_mac_address" in item:
                obj["primary_mac_address"] = {"id": item["primary_mac_address"], "mac_address": mac.upper()}
            answer.append(obj)
        return 200, answer

    def mac_object(object_id: int, value: str) -> dict[str, Any]:
        return {"id": object_id, "mac_address": value.upper(), "assigned_object_type": "virtualization.vminterface",
                "assigned_object_id": iface["id"]}

    fake.route("PATCH", "virtualization/interfaces/", patch)
    fake.route("GET", "virtualization/interfaces/", fixed(200, {"count": 1, "next": None, "previous": None,
                                                               "results": [iface]}))
    fake.route("POST", "dcim/mac-addresses/", lambda method, query, sent: (201, [mac_object(77, mac)]))
    fake.route("GET", "dcim/mac-addresses/", fixed(200, {"count": 2, "next": None, "previous": None,
                                                         "results": [mac_object(76, old), mac_object(77, mac)]}))
    fake.route("DELETE", "dcim/mac-addresses/", fixed(204, None))
    make_client(meta).set_macs({iface["id"]: mac})
    writes = [(call["method"], call["path"], call["body"]) for call in fake.writes()]
    cleanup = ("DELETE", "/api/dcim/mac-addresses/", [{"id": 76}])
    if meta["netbox_version"].startswith("4.7"):
        assert writes == [("PATCH", "/api/virtualization/interfaces/", [{"id": iface["id"], "mac_address": mac}]),
                          cleanup]
    else:
        assert writes == [
            ("POST", "/api/dcim/mac-addresses/", [{"mac_address": mac, "assigned_object_type":
                                                  "virtualization.vminterface", "assigned_object_id": iface["id"]}]),
            ("PATCH", "/api/virtualization/interfaces/", [{"id": iface["id"], "primary_mac_address": 77}]),
            cleanup,
        ]


def test_real_writes_are_journaled_per_object_with_their_undo_and_dry_run_reads_nothing_first(
        fake: FakeNetBox, meta: dict[str, Any], recorded: Callable[[str], Any], tmp_path: Path) -> None:
    listing = recorded("virtual-machines_by_name.json")
    vm = listing["results"][0]
    fake.route("GET", "virtualization/virtual-machines/", fixed(200, listing))
    fake.route("PATCH", "virtualization/virtual-machines/",
               lambda method, query, sent: (200, [{**vm, **item} for item in sent]))
    fake.route("POST", "virtualization/virtual-machines/",
               lambda method, query, sent: (201, [{**vm, **item, "id": 900 + n} for n, item in enumerate(sent)]))
    path = tmp_path / "audit.jsonl"
    journal = Journal("unit", audit.AuditLog(path), None, dry_run=False)
    changes = ChangeLog(dry_run=False, journal=journal)
    changes.undo = UndoStack(cast(Any, None))
    client = make_client(meta, changes=changes)
    client.create("vm", [{"name": "a.lab.example", "cluster": vm["cluster"]["id"]}, {"name": "b.lab.example"}])
    client.update("vm", [{"id": vm["id"], "memory": vm["memory"] * 2}])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["event"], line["seq"]) for line in lines] == [
        ("intent", 1), ("intent", 2), ("result", 1), ("result", 2), ("intent", 3), ("result", 3)]
    assert [line["detail"]["id"] for line in lines if line["event"] == "result"] == [900, 901, vm["id"]]
    undos = [line["undo"] for line in lines if line["event"] == "intent"]
    assert [undo["action"] for undo in undos] == ["vm-delete", "vm-delete", "vm-restore"]
    assert undos[0]["args"]["find"] == {"name": "a.lab.example"} and undos[0]["args"]["check"] == {
        "cluster": vm["cluster"]["id"]}
    assert undos[2]["args"]["old"] == {"memory": vm["memory"]} and undos[2]["args"]["id"] == vm["id"]
    assert [step.args.get("id") for _, step in changes.undo.steps] == [900, 901, vm["id"]]
    reads = [call for call in fake.calls if call["method"] == "GET" and "virtual-machines" in call["path"]]
    assert [(call["query"]["id"], call["query"]["fields"]) for call in reads] == [([str(vm["id"])],
                                                                                  ["id,memory,name"])]
    assert [change.target for change in changes.changes] == ["a.lab.example", "b.lab.example", vm["name"]]

    fake.calls.clear()
    make_client(meta, dry_run=True).update("vm", [{"id": vm["id"], "memory": 1}])
    assert fake.calls == []

    fake.calls.clear()  # the object as NetBox just answered it: its old values need no read
    client.update("vm", [{"id": vm["id"], "memory": 1}], current=[{**vm, "memory": 64}])
    assert [call["method"] for call in fake.calls] == ["PATCH"]
    last = json.loads(path.read_text().splitlines()[-2])
    assert last["event"] == "intent" and last["undo"]["args"]["old"] == {"memory": 64}
    fake.calls.clear()  # current without a field sent: read as before
    client.update("vm", [{"id": vm["id"], "vcpus": 3}], current=[{"id": vm["id"], "memory": 64}])
    assert [call["method"] for call in fake.calls] == ["GET", "PATCH"]
