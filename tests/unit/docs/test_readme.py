"""The README cannot drift from the code: its configuration table lists exactly the settings `settings.py`
has, and the commands it tells a newcomer to type use the venv's `crm-sor` (there is no other on a fresh clone)."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from settings import Settings

README = Path(__file__).resolve().parents[3] / "README.md"


def environment_names(model: type[BaseModel], prefix: str = "CRM_") -> Iterator[str]:
    """Every leaf setting as its environment variable; dicts of models (OAuth clients) under `<SLUG>`."""
    for name, info in model.model_fields.items():
        annotation, env = info.annotation, f"{prefix}{name.upper()}"
        args = typing.get_args(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from environment_names(annotation, env + "__")
        elif typing.get_origin(annotation) is dict and isinstance(args[1], type) and issubclass(args[1], BaseModel):
            yield from environment_names(args[1], env + "__<SLUG>__")
        else:
            yield env


def documented_names() -> set[str]:
    """The names in the first column of the README's configuration table (`__X` continues the row's group)."""
    section = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for row in section.splitlines():
        if not row.startswith("| `"):
            continue
        group = ""
        for token in re.findall(r"`([^`]+)`", row.split(" | ", 1)[0]):
            if token.startswith("CRM_"):
                names.add(token)
                group = token[: token.rindex("__") + 2] if "__" in token else ""
            elif token.startswith("__") and group:
                names.add(group + token[2:])
    return names


def test_the_configuration_table_lists_every_setting_and_nothing_else() -> None:
    in_code = set(environment_names(Settings))
    documented = documented_names()
    assert in_code - documented == set(), "settings missing from the README table"
    assert documented - in_code == set(), "README rows for settings that do not exist"


def test_readme_commands_run_from_a_fresh_clone() -> None:
    """A bare `crm-sor` is `command not found` until the venv is activated: every command line names the venv."""
    text = README.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = [line for block in blocks for line in block.splitlines() if line.strip() and not line.startswith("#")]
    bare = [line for line in lines if re.match(r"\s*crm-sor\b", line)]
    assert bare == [], f"use .venv/bin/crm-sor: {bare}"
    assert any(".venv/bin/crm-sor tenant connect" in line for line in lines)
