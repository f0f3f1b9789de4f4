"""Re-render the worked use cases from the template.

Each ``use_case_*/`` is what ``copier copy`` produces from its committed
``.copier-answers.yml``, plus the files that are the use case's own (anything the
template does not produce). This script renders each use case into a scratch folder
and replaces the template-owned files, leaving the use case's own files alone.

The answers name this repository as the template, seen from the use case
(``_src_path: ..``), at the commit the use case is checked out with (``_commit: HEAD``:
the use case is always a fresh render of the template beside it). So, from a checkout:
``cd use_case_news && copier update --trust --defaults --vcs-ref HEAD``.

Usage: python scripts/render_use_cases.py [--check] [NAME ...]
  --check   change nothing; exit 1 and list the files that differ from a fresh render
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from rendering import snapshot_template  # noqa: E402

ANSWERS_FILE = ".copier-answers.yml"
# Where a use case's template is: this repository seen from the use case, at the commit
# the use case is checked out with.
SOURCE = {"_commit": "HEAD", "_src_path": ".."}
USE_CASES = ("use_case_news", "use_case_fashion")


def use_case_answers(use_case: Path) -> dict:
    raw = yaml.safe_load((use_case / ANSWERS_FILE).read_text())
    return {key: value for key, value in raw.items() if not key.startswith("_")}


def render_use_case(use_case: Path, dest: Path, template: Path) -> Path:
    """Render ``use_case``'s answers into ``dest`` (no git tasks)."""
    from copier import run_copy

    run_copy(
        str(template),
        str(dest),
        data=use_case_answers(use_case),
        defaults=True,
        unsafe=True,
        quiet=True,
        skip_tasks=True,
    )
    point_at_this_repository(dest / ANSWERS_FILE)
    return dest


def point_at_this_repository(answers_file: Path) -> None:
    """Record ``SOURCE`` instead of the scratch snapshot the use case was rendered from."""
    lines = answers_file.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith(tuple(f"{k}:" for k in SOURCE))]
    header = [line for line in kept if line.startswith("#")]
    body = [line for line in kept if not line.startswith("#")]
    source = [f"{key}: {value}\n" for key, value in SOURCE.items()]
    answers_file.write_text("".join(header + source + body), encoding="utf-8")


def rendered_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def differences(use_case: Path, fresh: Path) -> list[str]:
    """Template-owned files of ``use_case`` that are missing or differ from ``fresh``."""
    problems = []
    for relative in rendered_files(fresh):
        mine = use_case / relative
        if not mine.exists():
            problems.append(f"{relative}: missing (the template renders it)")
        elif not filecmp.cmp(mine, fresh / relative, shallow=False):
            problems.append(f"{relative}: differs from the template's rendering")
    return problems


def sync(use_case: Path, fresh: Path) -> None:
    for relative in rendered_files(fresh):
        target = use_case / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(fresh / relative, target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true")
    parser.add_argument("names", nargs="*", default=list(USE_CASES))
    args = parser.parse_args(argv)
    status = 0
    with tempfile.TemporaryDirectory() as scratch:
        template = snapshot_template(Path(scratch) / "template")
        for name in args.names:
            use_case = REPO / name
            fresh = render_use_case(use_case, Path(scratch) / name, template)
            if args.check:
                problems = differences(use_case, fresh)
                for problem in problems:
                    print(f"{name}/{problem}")
                status |= bool(problems)
            else:
                sync(use_case, fresh)
                print(f"{name}: re-rendered from {use_case / ANSWERS_FILE}")
    return status


if __name__ == "__main__":
    sys.exit(main())
