"""The orchestrator's ground floor: its settings schema, metrics, envelopes, partitioner,
capture-entry parsing, lag sampling, dead letters and the worker context. Everything of
the orchestrator stands on it; it imports nothing of app/ (the top floor)."""
