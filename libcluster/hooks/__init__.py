"""The framework side of Ganeti hooks: the events hook scripts record, and the agent that acts on them.

On every node, ``hooks/cookbook-event`` (POSIX sh, installed by ``sre.ganeti.install-hooks``) runs
after instance operations and records one event in etcd (see :mod:`libcluster.hooks.events`); the
agent (:mod:`libcluster.hooks.agent`, ``cookbook-hooks-agent``) watches those events and runs
``sre.ganeti.sync-netbox --vm`` for each changed instance, so NetBox and DNS follow changes made by
hand with ``gnt-instance``.
"""
