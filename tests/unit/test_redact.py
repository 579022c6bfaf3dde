"""Credentials out of URLs, wherever in a text they stand."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frame_buffer_sdk.redact import redact_text, redact_value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rtsp://admin:s3cret@cam/stream", "rtsp://admin:***@cam/stream"),
        ("rtsp://admin:p@ss/w@rd@10.0.0.1:554/h264", "rtsp://admin:***@10.0.0.1:554/h264"),
        ("rtsp://token@cam/x", "rtsp://***@cam/x"),
        ("from rtsp://a:b@c/1 and http://d:e@f/2", "from rtsp://a:***@c/1 and http://d:***@f/2"),
        ('rtsp://u:p"w@h', "rtsp://u:***@h"),
        ("rtsp://cam/stream", "rtsp://cam/stream"),
        ("mailto:someone@example.com", "mailto:someone@example.com"),
        ("no url at all", "no url at all"),
        ('{"u": "rtsp://u:pa\\"ss@h/x", "v": "x@y"}', '{"u": "rtsp://u:***@h/x", "v": "x@y"}'),
        ('["rtsp:\\/\\/u:pw\\u0040h"]', '["rtsp:\\/\\/u:***@h"]'),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_redact_value_walks_json() -> None:
    value = {"rtsp://k:v@h": ["rtsp://a:b@c", 5, None, {"x": "rtsp://d:e@f"}]}
    assert redact_value(value) == {"rtsp://k:***@h": ["rtsp://a:***@c", 5, None, {"x": "rtsp://d:***@f"}]}


secrets = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), max_size=20).map(
    lambda tail: f"Zq9{tail}"
)


@settings(max_examples=300, deadline=None)
@given(
    secret=secrets,
    before=st.text(max_size=20).filter(lambda t: "Zq9" not in t),
    after=st.text(max_size=20).filter(lambda t: "Zq9" not in t),
    as_json=st.booleans(),
)
def test_fuzz_a_password_never_survives(secret: str, before: str, after: str, as_json: bool) -> None:
    url = f"rtsp://admin:{secret}@cam:554/x"
    text = json.dumps({"a": before, "url": url, "b": after}) if as_json else f"{before} {url} {after}"
    out = redact_text(text)
    assert secret not in out
    if as_json:
        assert json.loads(out)["url"] == "rtsp://admin:***@cam:554/x"
