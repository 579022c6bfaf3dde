"""Credentials out of URLs: ``rtsp://admin:s3cret@cam/stream`` becomes ``rtsp://admin:***@cam/stream``.

Capture services put camera URLs with their passwords into every frame they publish. The
bridge redacts each value it reads before anything else sees it, so no record, dead letter,
log line or span downstream can carry a password on.

Unencoded ``@`` and ``/`` in passwords are common in camera URLs, so the userinfo runs to
the last ``@`` of the URL: up to whitespace in plain text, and in text that is a JSON object
or array also up to an unescaped double quote (which ends a JSON string). That can hide a host
when a path holds an ``@`` and no credentials; hiding too much is the safe way to be wrong here.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

# scheme://userinfo@ ... with the separators as they may appear escaped inside JSON text.
_SLASHES = r"(?::(?://|\\/\\/))"
_AT = r"(?:@|\\u0040)"
_SCHEME = r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]{0,31}" + _SLASHES + r")"
# Bounded repeats keep a search linear in the text: a scheme is short, a userinfo under 512 characters.
# In JSON text an unescaped double quote ends the string, and a backslash escape (\") is part of
# the userinfo; in plain text only whitespace ends a URL.
_IN_JSON = re.compile(_SCHEME + r"(?P<userinfo>(?:[^\s\"\\]|\\.){0,512})" + _AT, re.IGNORECASE)
_IN_PLAIN = re.compile(_SCHEME + r"(?P<userinfo>\S{0,512})" + _AT, re.IGNORECASE)
_MARKERS = ("@", "\\u0040", "\\U0040")


def _mask(match: re.Match[str]) -> str:
    userinfo = match.group("userinfo")
    user, sep, _ = userinfo.partition(":")
    # Without a colon the whole userinfo may be a token: nothing of it is kept.
    kept = f"{user}:{MASK}" if sep and user and "/" not in user and "@" not in user else MASK
    return f"{match.group('scheme')}{kept}@"


def redact_text(text: str) -> str:
    """``text`` with the userinfo of every URL in it masked; text without a URL is returned as is."""
    if "://" not in text and ":\\/\\/" not in text:
        return text
    if not any(marker in text for marker in _MARKERS):
        return text
    pattern = _IN_JSON if text.lstrip().startswith(("{", "[")) else _IN_PLAIN
    return pattern.sub(_mask, text)


def redact_value(value: Any) -> Any:
    """Strings redacted, lists and dicts (keys too) walked; anything else returned unchanged."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list):
        return [redact_value(item) for item in value]
    if isinstance(value, dict):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    return value
