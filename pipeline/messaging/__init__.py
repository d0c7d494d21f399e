"""NATS plumbing: connecting, streams and dead letters, the embedded nats-server,
the hub and leaf topology, the WAN proxy, per-site users."""
