"""NetBox through pynetbox: strict paged reads, bulk writes, IP allocation, all recorded and dry-run aware.

`NetBox(config["netbox"], read_write=..., dry_run=..., changes=...)` is the client; its errors
derive from :class:`NetBoxError`.
"""

from libcluster.netbox.client import NetBox
from libcluster.netbox.errors import (
    NetBoxAmbiguous,
    NetBoxAnswerLost,
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

__all__ = [
    "NetBox",
    "NetBoxAmbiguous",
    "NetBoxAnswerLost",
    "NetBoxAuthError",
    "NetBoxConflict",
    "NetBoxError",
    "NetBoxFilterError",
    "NetBoxIgnoredField",
    "NetBoxNotFound",
    "NetBoxReadOnly",
    "NetBoxUnavailable",
    "NetBoxValidationError",
]
