"""Zone file snippets: rendered per zone, parsed back by dnspython, tampering detected."""

from __future__ import annotations

import dns.name
import pytest

from libcluster.dns import DNSSnippetError, Zones
from libcluster.dns.records import build
from libcluster.dns.snippets import parse, render, snippets, validate

ZONES = Zones(["example.org", "2.0.192.in-addr.arpa", "0-25.2.0.192.in-addr.arpa", "8.b.d.0.1.0.0.2.ip6.arpa"])
ENTRIES = [("web.example.org", "192.0.2.5"), ("web.example.org", "192.0.2.200"), ("db.example.org", "192.0.2.6"),
           ("web.example.org", "2001:db8::5"), ("example.org", "192.0.2.1")]


def test_snippets_round_trip_for_every_zone() -> None:
    records = build(ENTRIES, ZONES, 600).records
    texts = snippets(records, ZONES)
    zones = ("example.org", "2.0.192.in-addr.arpa", "0-25.2.0.192.in-addr.arpa", "8.b.d.0.1.0.0.2.ip6.arpa")
    assert set(texts) == {dns.name.from_text(zone) for zone in zones}
    parsed = {}
    for zone, text in texts.items():
        assert text.startswith(f"$ORIGIN {zone}\n")
        parsed.update(parse(zone, text))
    assert parsed == records
    assert all(parsed[key].ttl == 600 for key in records)


def test_names_are_relative_to_the_origin() -> None:
    records = build([("web.example.org", "192.0.2.5"), ("example.org", "192.0.2.1")], ZONES, 600).records
    text = snippets(records, ZONES)[dns.name.from_text("example.org")]
    assert text.splitlines()[1:] == ["@ 600 IN A 192.0.2.1", "web 600 IN A 192.0.2.5"]
    reverse = snippets(records, ZONES)[dns.name.from_text("2.0.192.in-addr.arpa")]
    assert "5 600 IN CNAME 5.0-25.2.0.192.in-addr.arpa." in reverse.splitlines()


def test_validation_catches_a_snippet_that_says_something_else() -> None:
    zone = dns.name.from_text("example.org")
    records = {key: rrset for key, rrset in build(ENTRIES, ZONES, 600).records.items()
               if key[0].is_subdomain(zone)}
    text = render(zone, records.values())
    validate(zone, text, records)
    with pytest.raises(DNSSnippetError, match="parses back"):
        validate(zone, text.replace("192.0.2.6", "192.0.2.66"), records)
    with pytest.raises(DNSSnippetError, match="missing"):
        validate(zone, "\n".join(line for line in text.splitlines() if not line.startswith("db")), records)
    with pytest.raises(DNSSnippetError, match="does not parse"):
        validate(zone, text + "broken 600 IN A not-an-address\n", records)
