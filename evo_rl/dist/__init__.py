"""Distributed training: a relay server, a trainer and rollout workers over ZeroMQ (see docs/distributed.md)."""
