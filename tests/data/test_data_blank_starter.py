"""The blank starter with too little data, as a new user meets it: ``cdl data pipeline`` and
``cdl model train`` (the real command, in the rendered project) fail with one clear line
naming what is missing and the command to run, exit code 1, no traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SPLIT_LINE = re.compile(
    r"^(train|test): (\d+) items, (\d+) kept < data\.min_items 10, (\d+) discarded \((.*)\)$"
)


def cdl(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("CDL_", "CI_"))}
    return subprocess.run(
        [sys.executable, "-m", "cdl_gitlab", *args],
        cwd=project,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``cdl: error:`` line of a failed command (nothing else on stderr)."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("cdl: error: "), result.stderr
    return lines[0].removeprefix("cdl: error: ")


def bad_mirror(root: Path) -> Path:
    """Tiny data a new user might try: texts shorter than min_chars, blank and .md files."""
    for blanks, label in enumerate(("good", "bad"), start=1):
        folder = root / label
        folder.mkdir(parents=True)
        for index in range(5):
            (folder / f"{index}.txt").write_text(f"a short {label} text number {index}\n")
        (folder / "empty.txt").write_text(" " * blanks)  # distinct: not split duplicates
        (folder / "notes.md").write_text(f"{label} notes " * 20)
    return root


@pytest.fixture
def blank(render_project) -> Path:
    return render_project(
        starter="blank",
        task="text",
        class_names="good,bad",
        include_compression=False,
        include_monitoring=False,
    )


def test_blank_starter_without_enough_data(blank: Path, tmp_path: Path) -> None:
    slug = "demo-project"
    message = one_error_line(cdl(blank, "model", "train"))
    assert message == (
        f"no train data: the data repo {slug}-train-validate does not exist (nothing collected "
        "and validated yet); run `cdl data pipeline`"
    )

    mirror = bad_mirror(tmp_path / "my-data")
    result = cdl(blank, "data", "pipeline", CDL_DATA_MIRROR=str(mirror))
    message = one_error_line(result)
    splits = [SPLIT_LINE.match(line) for line in result.stdout.splitlines()]
    rows = {m[1]: m for m in splits if m}
    assert sorted(rows) == ["test", "train"], result.stdout
    reasons: dict[str, int] = {}
    for row in rows.values():
        total, kept, discarded = int(row[2]), int(row[3]), int(row[4])
        assert kept == 0 and discarded == total
        for part in row[5].split(", "):
            reason, count = part.rsplit(" ", 1)
            reasons[reason] = reasons.get(reason, 0) + int(count)
    assert reasons == {"empty": 2, "extension": 2, "too_short": 10}
    assert message.startswith(
        "too few items to train and test on (train kept 0, test kept 0; data.min_items: 10). "
        "Discarded: empty, e.g. "
    )
    assert "; extension, e.g. " in message and ".md not in ['txt']" in message
    assert re.search(r"; too_short, e\.g\. \w+/\d\.txt \(\d+ characters < 100\)\.", message)
    assert message.endswith(
        "Fix the data, or the rules in data.validation of cdl.yaml, then run "
        "`cdl data pipeline` again"
    )

    message = one_error_line(cdl(blank, "model", "train"))
    assert re.fullmatch(
        rf"no train data: the validated train split {slug}-train-validate@[0-9a-f]{{12}} has "
        r"no items \(validation kept none\); run `cdl data pipeline` and fix what it reports",
        message,
    )
