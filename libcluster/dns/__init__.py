"""DNS through dnspython: records for names and addresses, TSIG AXFR, diffs, batched guarded RFC 2136 updates.

`DNS(config["dns"], dry_run=..., changes=...)` is the client; its errors derive from :class:`DNSError`.
"""

from libcluster.dns.client import DNS
from libcluster.dns.diff import Diff, RRsetChange
from libcluster.dns.errors import (
    DNSAnswerLost,
    DNSAuthError,
    DNSError,
    DNSPrerequisiteError,
    DNSRefused,
    DNSSnippetError,
    DNSUnavailable,
    DNSZoneError,
)
from libcluster.dns.records import Built, Records
from libcluster.dns.zones import Zones

__all__ = [
    "DNS",
    "Built",
    "DNSAnswerLost",
    "DNSAuthError",
    "DNSError",
    "DNSPrerequisiteError",
    "DNSRefused",
    "DNSSnippetError",
    "DNSUnavailable",
    "DNSZoneError",
    "Diff",
    "RRsetChange",
    "Records",
    "Zones",
]
