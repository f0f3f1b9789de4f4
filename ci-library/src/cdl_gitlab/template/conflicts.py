"""Leftover conflicts of a ``copier update``: inline markers and ``*.rej`` files.

Copier exits 0 when it could not merge a user's edit, leaving either inline markers
(``<<<<<<< before updating`` ... ``=======`` ... ``>>>>>>> after updating``) or a ``.rej``
file beside the file. A marker counts when it starts a line: ``<<<<<<<`` and ``>>>>>>>``
always, ``=======`` only between an opening and a closing marker (a Markdown heading
underline is not a conflict).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cdl_gitlab.errors import CDLError

_OPEN = re.compile(rb"^<{7}(?: |$)")
_CLOSE = re.compile(rb"^>{7}(?: |$)")
_MIDDLE = re.compile(rb"^={7}$")
_SKIP_DIRS = {
    ".git",
    ".venv",
    ".cdl",
    ".cdl-venv",
    ".gitlab-ci-local",
    "__pycache__",
    "node_modules",
}


class ConflictsFound(CDLError):
    """The tree has leftover conflicts (exit code 1)."""


@dataclass
class Conflict:
    """One conflicted file: the line numbers of its markers, or a ``.rej`` file."""

    path: str
    lines: list[int] = field(default_factory=list)
    rejected: bool = False

    def describe(self) -> str:
        if self.rejected:
            return f"{self.path}: rejected hunks Copier could not apply (a .rej file)"
        shown = ", ".join(map(str, self.lines[:10])) + (", ..." if len(self.lines) > 10 else "")
        return f"{self.path}: conflict markers on line{'s' if len(self.lines) > 1 else ''} {shown}"


def marker_lines(data: bytes) -> list[int]:
    """1-based numbers of the conflict-marker lines in ``data`` (empty: none)."""
    found: list[int] = []
    pending: list[int] = []  # '=======' lines seen after an opening marker
    inside = False
    for number, raw in enumerate(data.splitlines(), start=1):
        line = raw.rstrip(b"\r")
        if _OPEN.match(line):
            found.append(number)
            inside, pending = True, []
        elif _CLOSE.match(line):
            found.extend(pending)
            found.append(number)
            inside, pending = False, []
        elif inside and _MIDDLE.match(line):
            pending.append(number)
    found.extend(pending)  # an unclosed block still shows its separator
    return sorted(found)


def project_files(root: Path) -> list[str]:
    """The project's own files: tracked and untracked-but-not-ignored in a git work tree,
    else every file outside tool folders (``.git``, virtual environments, ``.cdl``)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout
        return sorted({p for p in out.decode().split("\0") if p and (root / p).is_file()})
    except (OSError, subprocess.CalledProcessError):
        files = []
        for folder, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
            files += [str((Path(folder) / n).relative_to(root)) for n in names]
        return sorted(files)


def find_conflicts(root: Path, files: Iterable[str] | None = None) -> list[Conflict]:
    """Every conflicted file under ``root`` (paths relative to it, sorted)."""
    conflicts = []
    for rel in project_files(root) if files is None else files:
        path = root / rel
        if rel.endswith(".rej"):
            conflicts.append(Conflict(rel, rejected=True))
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if b"\0" in data[:8192]:
            continue  # binary
        lines = marker_lines(data)
        if lines:
            conflicts.append(Conflict(rel, lines))
    return sorted(conflicts, key=lambda c: c.path)


def check_conflicts(root: Path) -> list[Conflict]:
    """Raise :class:`ConflictsFound` naming the conflicted files; return [] on a clean tree."""
    conflicts = find_conflicts(root)
    if conflicts:
        names = ", ".join(c.path for c in conflicts)
        raise ConflictsFound(
            f"{len(conflicts)} file(s) with leftover template-update conflicts: {names} "
            "(resolve the <<<<<<< / ======= / >>>>>>> blocks and delete the .rej files)"
        )
    return conflicts
