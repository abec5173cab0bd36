"""The cluster (issue 14): nodes elect a leader through etcd; the leader runs the broker and
streams its data dir to the followers (storage/replication), followers pass clients through to
it. Nothing here is imported by a single node (no `cluster.etcd_endpoints`). See
docs/cluster.md."""
