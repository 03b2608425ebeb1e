"""Bookkeeping of Ganeti instances in NetBox and DNS: make the records match what Ganeti runs.

:mod:`libcluster.sync.vm` records one instance in NetBox (VM, interfaces with MACs, primary IPs);
:mod:`libcluster.sync.dns` publishes a host's A/AAAA/PTR records, checks them and restores them.
Both take plain RAPI dicts and the run's clients, so a cookbook for one VM and a cluster-wide sync
share them; both are idempotent and, in dry-run, only record what they would change.
"""
