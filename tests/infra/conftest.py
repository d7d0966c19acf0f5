"""Shared by the infra tests (importlib mode does not let test modules import each other): the Dockerfile parsed
into its stages, as BuildKit reads it (comments, line continuations, global ARGs before the first FROM)."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (KEYWORD, arguments)

    def args(self, keyword: str) -> list[str]:
        return [a for k, a in self.instructions if k == keyword]

    def env(self) -> dict[str, str]:
        """ENV key=value pairs of this stage (later ones win)."""
        out: dict[str, str] = {}
        for text in self.args("ENV"):
            words = shlex.split(text)
            if len(words) >= 2 and "=" not in words[0]:  # legacy `ENV key value`
                out[words[0]] = " ".join(words[1:])
                continue
            for word in words:
                key, _, value = word.partition("=")
                out[key] = value
        return out

    def user(self) -> str:
        """The last USER of the stage ('' when none: root)."""
        users = self.args("USER")
        return users[-1].strip() if users else ""

    def exec_form(self, keyword: str) -> list[str]:
        (text,) = self.args(keyword)[-1:]
        return json.loads(text)


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: dict[str, Stage]


def parse_dockerfile(text: str) -> Dockerfile:
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):  # also inside a continuation, as BuildKit skips them
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a line continuation"
    global_args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), re.sub(r"\s+", " ", rest).strip()
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+ )?(\S+)(?: AS (\S+))?", rest, flags=re.IGNORECASE)
            assert match, f"FROM {rest}"
            name = match.group(2) or str(len(stages))
            assert name not in stages, f"stage {name} defined twice"
            current = stages[name] = Stage(name, match.group(1))
        elif current is None:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            key, _, value = rest.partition("=")
            global_args[key] = value
        else:
            current.instructions.append((keyword, rest))
    return Dockerfile(global_args, stages)


@pytest.fixture(scope="session")
def dockerfile() -> Dockerfile:
    return parse_dockerfile((ROOT / "Dockerfile").read_text())
