"""Ganeti cookbooks: create and change VMs, add nodes, report capacity, renew certificates.

Their shared --cluster/--group arguments are library API: libcluster.arguments.
"""

__title__ = "Ganeti cookbooks"
__owner_team__ = "SRE Infrastructure"
