"""SRE cookbooks"""

__owner_team__ = "SRE"
