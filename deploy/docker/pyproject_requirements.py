"""Print the third-party requirements of one or more pyproject.toml files, one a line.

The Dockerfile's dependency layer runs this on the pyproject files alone (no code copied yet),
then installs the result under constraints.txt; so editing code does not reinstall anything.

* ``[build-system].requires`` come first: the projects themselves are installed later with
  ``--no-build-isolation``, from this cached layer, without fetching a build backend again.
* ``[project].dependencies`` of every file follow, minus the projects given here (the
  orchestrator depends on ``frame-buffer-sdk``, which is installed from ``./sdk`` with the code)
  and minus direct references (``name @ url``), which only a copied project can satisfy.

Standard library only: it runs in the bare build image.

    python pyproject_requirements.py pyproject.toml [sdk/pyproject.toml ...]
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return canonical(match.group(1))


def requirements(paths: Iterable[Path]) -> list[str]:
    docs = [tomllib.loads(Path(path).read_text(encoding="utf-8")) for path in paths]
    local = {canonical(doc["project"]["name"]) for doc in docs if "project" in doc}
    build: list[str] = []
    runtime: list[str] = []
    for doc in docs:
        build.extend(doc.get("build-system", {}).get("requires", []))
        for requirement in doc.get("project", {}).get("dependencies", []):
            if requirement_name(requirement) in local or "@" in requirement.split(";")[0]:
                continue
            runtime.append(requirement)
    out: list[str] = []
    for requirement in build + runtime:
        if requirement not in out:
            out.append(requirement)
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for requirement in requirements(Path(arg) for arg in argv):
        print(requirement)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
