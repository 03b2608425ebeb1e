"""Ganeti's disk template families (3.0 constants), in one place for every cookbook and check.

``INT_MIRROR`` (DTS_INT_MIRROR) keep a secondary node Ganeti mirrors to; ``EXT_MIRROR``
(DTS_EXT_MIRROR) live on storage every node of the group reaches; together they are ``MIRRORED``
(DTS_MIRRORED): the templates whose instances can be migrated or failed over. ``file`` and ``plain``
are not: they must be moved (copied) or converted first (sre.ganeti.changedisk).
"""

from __future__ import annotations

INT_MIRROR = frozenset({"drbd"})
"""Templates with a secondary node (DTS_INT_MIRROR): a migrate or failover goes to that node."""
EXT_MIRROR = frozenset({"diskless", "sharedfile", "rbd", "ext", "gluster", "blockdev"})
"""Templates on shared storage (DTS_EXT_MIRROR): a migrate or failover goes to any node of the group."""
MIRRORED = INT_MIRROR | EXT_MIRROR
"""Templates whose instances can be migrated or failed over (DTS_MIRRORED)."""
