"""DNS cookbooks: keep the authoritative zones true to NetBox."""

__title__ = "DNS cookbooks"
__owner_team__ = "SRE Infrastructure"
