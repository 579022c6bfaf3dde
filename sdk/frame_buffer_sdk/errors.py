"""The exceptions of Frame Buffer v2, SDK and orchestrator alike."""

from __future__ import annotations


class ConfigurationError(SystemExit):
    """Raised at start when the environment holds a bad value; exits with a message.

    A SystemExit on purpose: entrypoints read settings first, and a bad value must end the
    process with the message, not a traceback."""
