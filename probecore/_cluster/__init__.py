"""Objectives spread over a cluster: shards built and kept on Dask workers.

:class:`ShardedObjective` combines one objective per shard of the data, each built on a
Dask worker by a factory and kept there; only parameter vectors and results cross the
network. It stands beside the algorithms and imports only the contract; Dask is imported
when one is built.
"""

from probecore._cluster.sharded import ShardedObjective, ShardLostError

__all__ = ["ShardLostError", "ShardedObjective"]
