"""environment.yml (for conda users) pins what constraints.txt pins (what make installs),
and lists every dependency that pyproject.toml declares."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[=<>\[ ;]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def _pins(lines) -> dict[str, str]:
    return {_name(line): line.strip() for line in lines if line.strip() and not line.startswith("#")}


def test_environment_file_matches_constraints_and_pyproject():
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(entry["pip"] for entry in environment["dependencies"] if isinstance(entry, dict))
    conda_pins = _pins(pip)
    constraints = _pins((REPO / "constraints.txt").read_text().splitlines())
    wrong = {name: (pin, constraints.get(name)) for name, pin in conda_pins.items() if constraints.get(name) != pin}
    assert not wrong, f"environment.yml pins differ from constraints.txt: {wrong}"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in ("book", "test"):
        declared += project["optional-dependencies"][extra]
    missing = sorted({_name(r) for r in declared} - set(conda_pins))
    assert not missing, f"environment.yml lacks {missing} (pyproject.toml declares them)"
