"""libcluster: the library ganeti-cookbooks cookbooks use, and the `cookbook` runner.

One module per integration (Ganeti, remote hosts, NetBox, DNS, locks); every client
knows whether a call reads or writes, so dry-run is honest everywhere.
"""

__version__ = "0.1.0"
