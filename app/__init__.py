"""Frame Buffer v2: the orchestrator's app package (settings, models, Faust app, web, CLI)."""
