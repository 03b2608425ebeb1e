"""random_mac: the cluster's prefix and three random bytes, as Ganeti makes a NIC's MAC."""

from __future__ import annotations

import re

import pytest

from libcluster.ganeti.macs import random_mac


def test_a_mac_keeps_the_prefix_and_varies_the_last_three_octets() -> None:
    made = {random_mac("AA:00:00 ") for _ in range(50)}
    assert all(re.fullmatch(r"aa:00:00(:[0-9a-f]{2}){3}", mac) for mac in made)
    assert len(made) > 45, "three random bytes: 50 draws almost never repeat"


@pytest.mark.parametrize("prefix", ["", "aa:00", "aa:00:00:00", "zz:00:00", "aa-00-00"])
def test_a_malformed_prefix_is_refused_naming_it(prefix: str) -> None:
    with pytest.raises(ValueError, match="is not three hex octets"):
        random_mac(prefix)
