"""Helpers shared by the registry tests."""

from __future__ import annotations

from pathlib import Path


def write_checkpoint(folder: Path, content: str = "weights") -> Path:
    """A checkpoint folder with a couple of files (one nested)."""
    (folder / "sub").mkdir(parents=True)
    (folder / "state_dict.pth").write_text(content, encoding="utf-8")
    (folder / "sub" / "metadata.json").write_text('{"steps_completed": 10}', encoding="utf-8")
    return folder
