"""The README's configuration table is the Settings object, field for field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from core.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \| (.*?) \| (.*) \|$")


def default_text(field: FieldInfo) -> str:
    """How the README writes a default: `value`, or (unset) / (empty)."""
    value: Any = field.default
    if value is PydanticUndefined and field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    if value is None:
        return "(unset)"
    if isinstance(value, list):
        return f"`{','.join(value)}`" if value else "(empty)"
    return f"`{value}`"


def readme_rows() -> dict[str, tuple[str, str]]:
    rows: dict[str, tuple[str, str]] = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            rows[match.group(1)] = (match.group(2), match.group(3))
    return rows


def test_every_setting_is_in_the_readme_with_its_default() -> None:
    rows = readme_rows()
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in rows]
    assert not missing, f"add these to README.md's configuration table: {missing}"
    wrong = {
        name.upper(): (rows[name.upper()][0], default_text(field))
        for name, field in Settings.model_fields.items()
        if rows[name.upper()][0] != default_text(field)
    }
    assert not wrong, f"README default differs from core/settings.py (readme, code): {wrong}"


def test_readme_names_no_setting_that_does_not_exist() -> None:
    stale = sorted(set(readme_rows()) - {name.upper() for name in Settings.model_fields})
    assert not stale, f"README.md documents variables Settings does not have: {stale}"


def test_every_row_has_a_description() -> None:
    assert all(description.strip() for _, description in readme_rows().values())


def test_every_metric_is_listed_in_the_readme() -> None:
    from prometheus_client.metrics import MetricWrapperBase

    import frame_buffer_sdk.metrics
    from core import metrics

    text = README.read_text(encoding="utf-8")
    modules = (metrics, frame_buffer_sdk.metrics)
    declared = [m._name for module in modules for m in vars(module).values() if isinstance(m, MetricWrapperBase)]
    assert declared
    # Counters drop their _total suffix in _name; the README lists the exposed name, which contains it.
    missing = [name for name in declared if f"`{name}" not in text]
    assert not missing, f"list these metrics under Observability in README.md: {missing}"


def test_every_table_is_in_the_readmes_table_views() -> None:
    from app.main import create_worker_app

    built = create_worker_app(Settings(store="memory://", kafka_broker="kafka://127.0.0.1:1"))
    names = [table.name for table in built.app.tables.values()]
    assert names
    text = README.read_text(encoding="utf-8")
    missing = [name for name in names if f"| `{name}` |" not in text]
    assert not missing, f"list these tables under Faust's table views in README.md: {missing}"
