"""The sections of a Keep-a-Changelog file between two versions.

Headings are ``## [X.Y.Z] - YYYY-MM-DD`` (``## [Unreleased]`` is skipped); a section runs
to the next ``## `` heading. Link reference definitions at the end are not part of a
section.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

_HEADING = re.compile(r"^## \[(?P<version>[^\]]+)\](?:\s*-\s*(?P<date>\S.*?))?\s*$")
_LINK_DEF = re.compile(r"^\[[^\]]+\]:\s*\S+")


@dataclass(frozen=True)
class Section:
    version: str
    date: str | None
    body: str

    @property
    def heading(self) -> str:
        return f"[{self.version}]" + (f" - {self.date}" if self.date else "")


def parse_sections(text: str) -> list[Section]:
    """Every released section of ``text``, in file order."""
    sections: list[Section] = []
    current: tuple[str, str | None] | None = None
    body: list[str] = []

    def close() -> None:
        if current is not None:
            while body and (not body[-1].strip() or _LINK_DEF.match(body[-1])):
                body.pop()
            sections.append(Section(current[0], current[1], "\n".join(body).strip("\n")))

    for line in text.splitlines():
        match = _HEADING.match(line)
        if match or line.startswith("## "):
            close()
            body = []
            current = None
            if match and match["version"].strip().lower() != "unreleased":
                current = (match["version"].strip(), match["date"])
            continue
        if current is not None:
            body.append(line)
    close()
    return sections


def _version(text: str) -> Version | None:
    try:
        return Version(text.removeprefix("v"))
    except InvalidVersion:
        return None


def sections_between(text: str, after: str, upto: str) -> list[Section]:
    """The sections of versions ``after < v <= upto``, newest first."""
    low, high = _version(after), _version(upto)
    if low is None or high is None:
        raise ValueError(f"not versions: {after!r}, {upto!r}")
    chosen = [
        (v, s) for s in parse_sections(text) if (v := _version(s.version)) and low < v <= high
    ]
    return [s for _, s in sorted(chosen, key=lambda pair: pair[0], reverse=True)]


def demote(body: str, levels: int = 1) -> str:
    """Markdown headings ``levels`` deeper (a section's ``### Added`` under an MR heading);
    lines inside fenced code blocks are left alone."""
    out, fenced = [], False
    for line in body.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,5} ", line):
            line = "#" * levels + line
        out.append(line)
    return "\n".join(out)
