"""Several nodes, one log: etcd-ordered replication and the peer calls.

- :mod:`node.replication.records`: the batch record a node puts to etcd;
- :mod:`node.replication.etcd`: the ordering service (aetcd): put a batch
  under the next sequence key, watch the order, publish applied positions,
  compact behind the slowest node;
- :mod:`node.replication.replicator`: applies the order through
  ``Ledger.submit`` and answers the local submitters; the
  :class:`ReplicatedCommitter` puts it behind the node's group committer;
- :mod:`node.replication.catchup`: fetches and verifies a peer's blocks
  when etcd no longer holds the history a node needs;
- :mod:`node.replication.peer`: the ``carbonledger.v1.Peer`` servicer.
"""
