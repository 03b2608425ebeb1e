"""The lab: a real Ganeti cluster, NetBox, Knot DNS, etcd and ngircd on one Debian machine.

`cookbook-lab up|down|status|config` drives it; tests and the demo run against it. A development tool in its
own package, apart from libcluster (what cookbooks use): `./dev install` does not ship it.
"""
