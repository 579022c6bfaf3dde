"""``frame-orchestrator migrate --from-v1``: frame-buffer v1's Redis state into this orchestrator."""
