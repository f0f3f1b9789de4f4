"""`cdl template check-conflicts` and the CHANGELOG sections of an update merge request."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdl_gitlab.cli import cli
from cdl_gitlab.template.changelog import demote, parse_sections, sections_between
from cdl_gitlab.template.conflicts import Conflict, find_conflicts, marker_lines
from cdl_gitlab.template.merge_request import UpdateNote

CONFLICTED = (
    "training:\n"
    "<<<<<<< before updating\n"
    "  replicas: 3\n"
    "=======\n"
    "  replicas: 2\n"
    ">>>>>>> after updating\n"
    "serving: {}\n"
)


def _tree(root: Path, files: dict[str, str]) -> Path:
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


def _check(root: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["template", "check-conflicts", "--project-dir", str(root)])
    return result.exit_code, result.output + (str(result.exception) if result.exception else "")


def test_markers_count_at_line_starts_and_separators_only_between_them() -> None:
    assert marker_lines(CONFLICTED.encode()) == [2, 4, 6]
    heading = b"Title\n=======\n\ntext with <<<<<<< inside and a >>>>>>> arrow\n"
    assert marker_lines(heading) == []
    assert marker_lines(b"<<<<<<<\nmine\n=======\ntheirs\n>>>>>>>\n") == [1, 3, 5]


def test_check_conflicts_passes_on_a_clean_tree(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"README.md": "Project\n=======\n", "cdl.yaml": "serving: {}\n"})
    code, output = _check(root)
    assert code == 0, output
    assert "no template-update conflicts" in output


def test_check_conflicts_fails_naming_marker_and_rej_files(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "cdl.yaml": CONFLICTED,
            "model/const.yaml.rej": "@@ -1 +1 @@\n-a\n+b\n",
            "README.md": "fine\n",
            ".gitignore": "ignored/\n",
            "ignored/old.yaml": CONFLICTED,  # ignored files are not the project's
        },
    )
    (root / "blob.bin").write_bytes(b"\0<<<<<<< x\n")  # binary files are skipped
    assert [c.path for c in find_conflicts(root)] == ["cdl.yaml", "model/const.yaml.rej"]
    code, output = _check(root)
    assert code == 1, output
    assert "cdl.yaml: conflict markers on lines 2, 4, 6" in output
    assert "model/const.yaml.rej: rejected hunks" in output
    assert "2 file(s) with leftover template-update conflicts" in output


CHANGELOG = """# Changelog

Intro text.

## [Unreleased]

### Added

- not released yet

## [0.4.0] - 2026-12-20

### Added

- Four.

```sh
# a comment, not a heading
```

## [0.3.0] - 2026-12-10

### Fixed

- Three.

## [0.2.0] - 2026-11-29

- Two.

[0.4.0]: https://example.invalid/compare/0.3.0...0.4.0
"""


def test_changelog_sections_of_the_versions_crossed() -> None:
    assert [s.version for s in parse_sections(CHANGELOG)] == ["0.4.0", "0.3.0", "0.2.0"]
    crossed = sections_between(CHANGELOG, "0.2.0", "0.4.0")
    assert [s.heading for s in crossed] == ["[0.4.0] - 2026-12-20", "[0.3.0] - 2026-12-10"]
    assert crossed[1].body == "### Fixed\n\n- Three."
    assert "not released yet" not in "".join(s.body for s in crossed)
    assert sections_between(CHANGELOG, "0.4.0", "0.4.0") == []
    demoted = demote(crossed[0].body)
    assert "#### Added" in demoted and "# a comment, not a heading" in demoted
    with pytest.raises(ValueError, match="not versions"):
        sections_between(CHANGELOG, "old", "0.4.0")


def test_merge_request_description_and_draft_title() -> None:
    sections = sections_between(CHANGELOG, "0.2.0", "0.4.0")
    clean = UpdateNote("0.2.0", "0.4.0", [], sections, "ci-library/CHANGELOG.md")
    assert clean.title == "Update the CDL template from 0.2.0 to 0.4.0"
    text = clean.description()
    assert "### [0.4.0] - 2026-12-20" in text and "#### Fixed" in text
    assert "without conflicts" in text

    conflicts = [Conflict("cdl.yaml", marker_lines(CONFLICTED.encode()))]
    draft = UpdateNote("0.2.0", "0.4.0", conflicts, None, "ci-library/CHANGELOG.md")
    assert draft.title.startswith("Draft: ")
    assert "- `cdl.yaml`: conflict markers on lines 2, 4, 6" in draft.description()
    assert "has no `ci-library/CHANGELOG.md`" in draft.description()
    empty = UpdateNote("0.4.0", "0.5.0", [], [], "ci-library/CHANGELOG.md")
    assert "has no section for the versions after 0.4.0 up to 0.5.0" in empty.description()


def test_rendered_project_offers_renovate_copier_manager(render_project) -> None:
    project = render_project(starter="news")
    config = json.loads((project / "renovate.json").read_text(encoding="utf-8"))
    assert config["enabledManagers"] == ["copier"]
    assert config["copier"]["enabled"] is True
    assert config["ignoreScripts"] is False  # Copier runs with --trust (tasks, migrations)
    assert config["baseBranches"] == ["dev"]
    readme = (project / "README.md").read_text(encoding="utf-8")
    assert "`renovate.json` enables only that manager" in readme
    assert "CDL_SCHEDULE` = `template-update`" in readme
