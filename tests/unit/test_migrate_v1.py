"""v1's records as ours: frame_queue replays, frame_dlq letters, registry specs; and the plan built of them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.parsing import parse_entry
from migrate.plan import FROM_START, Marker, Snapshot, V1Group, plan, report
from migrate.v1 import ORIGIN_FIELD, NotImportable, V1Names, dead_letter, processor_spec, replay_fields

PASSWORD = "Zq9-pw@1"
URL = f"rtsp://admin:{PASSWORD}@cam-1/stream"
FRAME = {"frame_id": "f-1", "camera_id": "cam-1", "timestamp": "2026-03-01T12:00:00", "source_url": URL, "width": 640}


def v1_registry_value(pid: str, **changes: Any) -> str:
    """As detektr's ProcessorRegistry.register stores it: json.dumps(ProcessorInfo.to_redis_hash())."""
    doc = {
        "id": pid,
        "capabilities": json.dumps(["object_detection"]),
        "capacity": "10",
        "queue": f"frames:ready:{pid}",
        "endpoint": "",
        "health_endpoint": "",
        "metadata": json.dumps({"gpu": True}),
    }
    doc.update(changes)
    return json.dumps(doc)


# --- frame_queue ---------------------------------------------------------------------------------


def test_a_queued_frame_replays_whole_as_the_wrapped_form() -> None:
    fields = replay_fields(
        "7-0", {"frame_data": json.dumps(FRAME), "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}
    )
    frame = parse_entry(fields).frame
    assert frame is not None
    assert (frame.frame_id, frame.camera_id, frame.width) == ("f-1", "cam-1", 640)
    assert frame.traceparent == "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    assert frame.metadata[ORIGIN_FIELD] == "7-0"
    assert PASSWORD not in frame.model_dump_json()


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", ""])
def test_a_queued_entry_that_is_no_frame_is_replayed_for_the_bridge_to_dead_letter(text: str) -> None:
    fields = replay_fields("7-1", {"frame_data": text})
    assert fields == {"payload": text, ORIGIN_FIELD: "7-1"}
    outcome = parse_entry(fields)
    assert outcome.frame is None and outcome.error is not None


def test_a_queued_entry_without_frame_data_replays_its_fields() -> None:
    assert replay_fields("7-2", {"frame_id": "f"}) == {"frame_id": "f", ORIGIN_FIELD: "7-2"}


# --- frame_dlq -----------------------------------------------------------------------------------


def test_a_v1_dead_letter_is_converted_from_its_python_repr() -> None:
    frame = {**FRAME, "roi": (1, 2), "ok": True, "none": None}
    letter = dead_letter("9-0", {"frame": str(frame), "reason": "buffer_full"})
    assert (letter.reason, letter.stream_id, letter.frame_id, letter.camera_id) == (
        "v1:buffer_full",
        "9-0",
        "f-1",
        "cam-1",
    )
    assert letter.raw["frame"]["roi"] == [1, 2] and letter.raw["frame"]["ok"] is True
    assert letter.raw["frame"]["source_url"] == "rtsp://admin:***@cam-1/stream"
    assert "frame_dlq" in letter.detail
    assert PASSWORD not in letter.model_dump_json()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{'frame_id': 'f', 'at': datetime.datetime(2026, 1, 1)}", "not a Python literal"),
        ("__import__('os').system('true')", "not a Python literal"),
        ("['a list']", "not a dict"),
        ("{'broken': ", "not a Python literal"),
        (f"{{'frame_id': 'f', 'source_url': '{URL}', 'x': ", "not a Python literal"),
        ("{" * 100_000, "not a Python literal"),
    ],
)
def test_an_unparseable_v1_dead_letter_is_still_converted_with_its_raw_text(text: str, why: str) -> None:
    letter = dead_letter("9-1", {"frame": text, "reason": "buffer_full"})
    assert letter.reason == "v1:buffer_full" and letter.stream_id == "9-1"
    assert why in letter.detail
    assert isinstance(letter.raw["frame"], str) and letter.raw["frame"][:20] == text[:20].replace(PASSWORD, "***")
    assert PASSWORD not in letter.model_dump_json()


def test_a_v1_dead_letter_without_reason() -> None:
    assert dead_letter("9-2", {"frame": "{}"}).reason == "v1:unknown"


# --- processors:registry -------------------------------------------------------------------------


def test_a_v1_registry_entry_is_a_spec() -> None:
    spec = processor_spec("yolo-1", v1_registry_value("yolo-1"))
    assert spec.id == "yolo-1" and spec.capabilities == ["object_detection"] and spec.capacity == 10
    assert spec.metadata == {"gpu": True} and spec.queue == "frames:ready:yolo-1"
    spec = processor_spec("p", v1_registry_value("p", endpoint="http://u:pw@p:80/x"))
    assert spec.metadata["v1"] == {"endpoint": "http://u:***@p:80/x"}


def test_plain_json_values_are_read_too() -> None:
    spec = processor_spec("p", json.dumps({"id": "p", "capabilities": ["a", "b"], "capacity": 3, "metadata": {}}))
    assert (spec.capabilities, spec.capacity, spec.metadata) == (["a", "b"], 3, {})


@pytest.mark.parametrize(
    ("pid", "value", "why"),
    [
        ("p", "{oops", "not JSON"),
        ("p", "[]", "not an object"),
        ("p", v1_registry_value("q"), "not its key"),
        ("p", v1_registry_value("p", capabilities="[]"), "capabilities"),
        ("p", v1_registry_value("p", capabilities='["no spaces"]'), "capabilities"),
        ("p", v1_registry_value("p", capacity="lots"), "capacity"),
        ("p", v1_registry_value("p", capacity="0"), "capacity"),
        ("p", v1_registry_value("p", metadata="[1]"), "metadata"),
        ("bad id!", v1_registry_value("bad id!"), "id"),
        ("p", v1_registry_value("p", queue="no spaces"), "queue"),
    ],
)
def test_a_registry_entry_that_is_no_spec_says_why(pid: str, value: str, why: str) -> None:
    with pytest.raises(NotImportable, match=why):
        processor_spec(pid, value)


# --- the plan ------------------------------------------------------------------------------------

NAMES = V1Names()


def snapshot(**changes: Any) -> Snapshot:
    values: dict[str, Any] = {
        "stream": "frames:metadata",
        "group": "frame-orchestrator",
        "names": NAMES,
        "v1_group": V1Group(last_delivered="30-0", pending=("21-0", "25-0"), pending_gone=("22-0",)),
        "our_group_exists": False,
        "queue": (("5-0", {"frame_data": json.dumps(FRAME)}),),
        "dlq": (("6-0", {"frame": str(FRAME), "reason": "buffer_full"}), ("6-1", {"frame": "{", "reason": "x"})),
        "registry": (("ok-1", v1_registry_value("ok-1")), ("bad", "{")),
    }
    values.update(changes)
    return Snapshot(**values)


def test_the_plan_hands_over_exactly_what_v1_never_acknowledged() -> None:
    snap = snapshot()
    p = plan(snap)
    assert p.group is not None and (p.group.start_id, p.group.handover) == ("30-0", ("21-0", "25-0"))
    assert [sid for sid, _ in p.replays] == ["5-0"]
    assert [letter.stream_id for letter in p.dead_letters] == ["6-0", "6-1"]
    assert [spec.id for spec in p.processors] == ["ok-1"]
    assert {skip.what for skip in p.skipped} == {"v1 pending entry 22-0", "processor 'bad'"}
    text = report(p, snap, dry_run=False)
    assert "reading after 30-0; 2 entries v1 read but never acknowledged handed" in text
    assert "1 frames replayed" in text and "2 dead letters converted (1 unparseable" in text
    assert "1 processors registered" in text and "skipped processor 'bad': registry value is not JSON" in text
    assert report(p, snap, dry_run=True).replace("would be ", "").replace(" (dry run: nothing changed)", "") == text


def test_a_v1_that_may_still_run_is_pointed_out() -> None:
    recent = V1Group(last_delivered="30-0", pending=(), idle_ms=1500)
    assert any("1.5 s ago" in note for note in plan(snapshot(v1_group=recent)).notes)
    stopped = V1Group(last_delivered="30-0", pending=(), idle_ms=600_000)
    assert not plan(snapshot(v1_group=stopped)).notes


def test_without_a_v1_group_everything_in_the_stream_is_new() -> None:
    p = plan(snapshot(v1_group=None))
    assert p.group is not None and (p.group.start_id, p.group.handover) == (FROM_START, ())


def test_an_existing_group_of_ours_is_left_alone() -> None:
    p = plan(snapshot(our_group_exists=True))
    assert p.group is None and any("exists already" in skip.why for skip in p.skipped)


def test_a_finished_migration_plans_nothing() -> None:
    snap = snapshot(marker=Marker(finished_at="2026-12-01T20:00:00+00:00"))
    p = plan(snap)
    assert p.changes_nothing and p.already_done
    assert "nothing to do" in report(p, snap, dry_run=False)


def test_an_interrupted_migration_resumes_where_it_stopped() -> None:
    snap = snapshot(our_group_exists=True, marker=Marker(group_done=True, registry_done=True, dlq_through="6-0"))
    p = plan(snap)
    assert p.group is None and not p.processors
    assert not [skip for skip in p.skipped if "exists already" in skip.why]
    assert any("earlier, interrupted run" in note for note in p.notes)


# --- fuzzing -------------------------------------------------------------------------------------

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
py_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=15,
)


@FUZZ
@given(st.dictionaries(st.text(max_size=10), py_values, max_size=6), st.text(max_size=20))
def test_fuzz_any_v1_repr_converts(frame: dict[str, Any], reason: str) -> None:
    letter = dead_letter("1-0", {"frame": str({**frame, "source_url": URL}), "reason": reason})
    assert letter.reason == f"v1:{reason or 'unknown'}"
    assert PASSWORD not in letter.model_dump_json()
    assert isinstance(letter.raw["frame"], dict)


@FUZZ
@given(st.text(max_size=200))
def test_fuzz_any_text_converts(text: str) -> None:
    letter = dead_letter("1-0", {"frame": text, "reason": "buffer_full"})
    letter.model_dump_json()
    assert letter.stream_id == "1-0"


@FUZZ
@given(
    st.text(max_size=100),
    st.dictionaries(st.sampled_from(["id", "capabilities", "capacity", "metadata", "queue"]), py_values),
)
def test_fuzz_registry_values_import_or_say_why(pid: str, doc: dict[str, Any]) -> None:
    for value in (json.dumps(doc, default=str), json.dumps({k: json.dumps(v, default=str) for k, v in doc.items()})):
        try:
            spec = processor_spec(pid, value)
        except NotImportable as exc:
            assert str(exc)
        else:
            assert spec.id == pid and spec.capabilities


@FUZZ
@given(st.text(max_size=100), st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=4))
def test_fuzz_queue_entries_replay_into_something_the_bridge_parses(frame_data: str, extra: dict[str, str]) -> None:
    fields = replay_fields("1-0", {**extra, "frame_data": frame_data})
    outcome = parse_entry(fields, "2-0")
    assert (outcome.frame is None) != (outcome.error is None)
