"""The size of an experiment's model context, checked before anything is uploaded.

The determined SDK sends the context directory (minus its default ignores and the patterns of
``.detignore``) inside the experiment request and refuses one above
``determined.common.constants.MAX_CONTEXT_SIZE`` with a bare ``ValueError`` only after reading
every file into memory. ``check_context`` walks the same files by their sizes alone (the SDK's
own ignore rules, read from the SDK) and names the largest entries, so a virtual environment or
a cache left in the project says which folder to add to ``.detignore``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cdl_gitlab.errors import CDLError


class ContextTooLargeError(CDLError):
    """The model context exceeds what the Determined master accepts."""


@dataclass(frozen=True)
class ContextSize:
    total: int
    files: int
    by_entry: dict[str, int]  # top-level entry of the context -> bytes sent


def _ignore_spec(root: Path):  # type: ignore[no-untyped-def]
    import pathspec
    from determined.common import constants

    lines = list(constants.DEFAULT_DETIGNORE)
    ignore_file = root / ".detignore"
    if ignore_file.is_file():
        lines += ignore_file.read_text(encoding="utf-8").splitlines()
    return pathspec.PathSpec.from_lines(pathspec.patterns.GitWildMatchPattern, lines)


def ignored(root: Path, path: Path) -> bool:
    """True when ``path`` (a folder inside ``root``) is left out by the SDK's ignore rules and
    ``root/.detignore``, itself or through a parent folder: not uploaded as the context, and not
    copied into an off-cluster checkpoint as its code."""
    root = Path(root).resolve()
    spec = _ignore_spec(root)
    parts = Path(path).resolve().relative_to(root).parts
    return any(spec.match_file("/".join(parts[:end]) + "/") for end in range(1, len(parts) + 1))


def context_size(root: Path) -> ContextSize:
    """Bytes and files the SDK would send from ``root`` (the same walk and ignore rules)."""
    root = Path(root).resolve()
    spec = _ignore_spec(root)
    by_entry: dict[str, int] = {}
    total = files = 0
    for parent, dirs, names in os.walk(root):
        here = Path(parent)
        kept = []
        for name in dirs:
            rel = str((here / name).relative_to(root))
            if not (spec.match_file(rel) or spec.match_file(rel + "/")):
                kept.append(name)
        dirs[:] = kept
        for name in names:
            path = here / name
            rel_path = path.relative_to(root)
            if name == ".detignore" or spec.match_file(str(rel_path)):
                continue
            try:
                size = path.stat().st_size
            except OSError:
                continue
            top = rel_path.parts[0] + ("/" if len(rel_path.parts) > 1 else "")
            by_entry[top] = by_entry.get(top, 0) + size
            total += size
            files += 1
    return ContextSize(total, files, by_entry)


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


def context_limit() -> int:
    """The SDK's limit on a context (bytes before base64)."""
    from determined.common import constants

    return int(constants.MAX_CONTEXT_SIZE)


def check_context(root: Path, limit: int | None = None) -> ContextSize:
    """``context_size(root)``, or ContextTooLargeError naming the largest entries."""
    limit = context_limit() if limit is None else limit
    size = context_size(root)
    if size.total <= limit:
        return size
    largest = sorted(size.by_entry.items(), key=lambda item: -item[1])[:5]
    shown = ", ".join(f"{name} {_mb(bytes_)}" for name, bytes_ in largest)
    raise ContextTooLargeError(
        f"the model context {root} is {_mb(size.total)} in {size.files} files, over the "
        f"Determined limit of {_mb(limit)}; largest entries: {shown}. Add what the trial does "
        f"not need (virtual environments, caches, data) to {Path(root) / '.detignore'}"
    )
