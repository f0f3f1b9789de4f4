"""The use cases are renderings of the template: template-owned files never drift."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import render_use_cases  # noqa: E402


@pytest.mark.parametrize("name", render_use_cases.USE_CASES)
def test_use_case_matches_a_fresh_render(name: str, template_dir: Path, tmp_path: Path):
    use_case = REPO / name
    fresh = render_use_cases.render_use_case(use_case, tmp_path / name, template_dir)
    problems = render_use_cases.differences(use_case, fresh)
    assert problems == [], (
        f"{name} drifted from the template (run: python scripts/render_use_cases.py):\n"
        + "\n".join(problems)
    )


def test_drift_is_detected(template_dir: Path, tmp_path: Path):
    use_case = REPO / "use_case_news"
    fresh = render_use_cases.render_use_case(use_case, tmp_path / "fresh", template_dir)
    edited = fresh / "cdl.yaml"
    edited.write_text(edited.read_text() + "# local edit\n")
    problems = render_use_cases.differences(use_case, fresh)
    assert problems == ["cdl.yaml: differs from the template's rendering"]
