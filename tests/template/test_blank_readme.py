"""The blank starter's README says what data the project needs, and its example works."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

CDL = Path(sys.executable).parent / "cdl"


def your_data_section(readme: str) -> str:
    return readme.split("## Your data", 1)[1].split("\n## ", 1)[0]


def test_the_readme_example_is_data_the_pipeline_accepts(render_project):
    project = render_project(starter="blank", class_names="good,bad")
    section = your_data_section((project / "README.md").read_text())
    assert "good/" in section and "bad/" in section and "0001.txt" in section
    assert "data_source" in section and "CDL_DATA_MIRROR" in section and "data.mirror" in section
    example = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert example, "the section has no example to run"
    subprocess.run(["bash", "-euc", example.group(1)], cwd=project, check=True)

    mirror = project.parent / "my-data"
    assert sorted(p.name for p in mirror.iterdir()) == ["bad", "good"]
    result = subprocess.run(
        [str(CDL), "data", "pipeline"],
        cwd=project,
        env={**os.environ, "CDL_DATA_MIRROR": str(mirror), "CDL_PROFILE": "local"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "collect: 60 files" in result.stdout
    assert "discarded 0" in result.stdout


def test_only_the_blank_starter_explains_its_data(render_project):
    assert "## Your data" not in (render_project(starter="news") / "README.md").read_text()
