"""MAC addresses for new NICs, made as Ganeti makes them: the cluster's mac_prefix and three random bytes.

A caller that picks the MAC itself knows it before the create job ends (makevm records the NetBox
interface while Ganeti creates the instance); Ganeti refuses a MAC already in use, in the dry-run
check as in the create, so a collision stops the run before anything changes.
"""

from __future__ import annotations

import re
import secrets

_PREFIX = re.compile(r"^[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$")


def random_mac(mac_prefix: str) -> str:
    """A MAC in the cluster's prefix (``/2/info`` mac_prefix, e.g. "aa:00:00"); ValueError on a malformed prefix."""
    prefix = mac_prefix.strip().lower()
    if not _PREFIX.match(prefix):
        raise ValueError(f"cluster mac_prefix {mac_prefix!r} is not three hex octets (aa:00:00)")
    return prefix + "".join(f":{byte:02x}" for byte in secrets.token_bytes(3))
