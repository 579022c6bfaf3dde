"""Procfile and Procfile.dev run only real `frame-orchestrator` commands, with options they accept."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from app.cli import main
from core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
ASSIGNMENT = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")


def processes(name: str) -> dict[str, str]:
    lines = [line for line in (REPO / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    entries = dict(line.split(":", 1) for line in lines if not line.lstrip().startswith("#"))
    return {process.strip(): command.strip() for process, command in entries.items()}


def check_command(command: str) -> None:
    words = shlex.split(command)
    while words and (match := ASSIGNMENT.match(words[0])):
        # A variable set on the line must be one of ours (Faust's are ignored) and valid.
        assert match.group(1).lower() in Settings.model_fields, f"{match.group(1)} is not a setting: {command}"
        Settings(**{match.group(1).lower(): match.group(2)})
        words.pop(0)
    assert words[:1] == ["frame-orchestrator"], command
    group: click.Group = main
    name, args = words[1], words[2:]
    while True:
        assert name in group.commands, f"no subcommand {name!r}: {command}"
        sub = group.commands[name]
        if not isinstance(sub, click.Group):
            break
        group, name, args = sub, args[0], args[1:]
    # Parses the options and arguments as the command would, without running it.
    with sub.make_context(name, list(args)):
        pass


@pytest.mark.parametrize("procfile", ["Procfile", "Procfile.dev"])
def test_every_process_is_a_frame_orchestrator_command(procfile: str) -> None:
    entries = processes(procfile)
    assert entries
    for command in entries.values():
        check_command(command)


def test_the_worker_is_the_web_process_beside_bridge_and_relay() -> None:
    entries = processes("Procfile")
    assert shlex.split(entries["web"]) == ["frame-orchestrator", "worker"]
    assert set(entries) == {"web", "bridge", "relay"}


def test_procfile_dev_runs_worker_bridge_processors_and_capture() -> None:
    subcommands = {
        shlex.split(c)[shlex.split(c).index("frame-orchestrator") + 1] for c in processes("Procfile.dev").values()
    }
    assert subcommands == {"worker", "bridge", "processor", "capture"}


def test_a_made_up_subcommand_or_option_is_caught() -> None:
    with pytest.raises(AssertionError):
        check_command("frame-orchestrator teleport")
    with pytest.raises(click.UsageError):
        check_command("frame-orchestrator processor brightness --no-such-option")
    with pytest.raises(AssertionError):
        check_command("BROKER_URL=kafka://x:1 frame-orchestrator worker")
