"""Re-render the worked use cases from the template.

Each ``use_case_*/`` is what ``copier copy`` produces from its committed
``.copier-answers.yml``, plus the files that are the use case's own (anything the
template does not produce). This script renders each use case into a scratch folder
and replaces the template-owned files, leaving the use case's own files alone.

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
# Keys Copier writes about the render itself, not answers: they change with every commit.
VOLATILE_KEYS = ("_commit", "_src_path")
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
    return dest


def rendered_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def _answers(path: Path) -> dict:
    """The Copier answers in ``path`` without the keys that change on every render."""
    answers = yaml.safe_load(path.read_text())
    return {k: v for k, v in answers.items() if k not in VOLATILE_KEYS}


def _answers_equal(a: Path, b: Path) -> bool:
    return _answers(a) == _answers(b)


def differences(use_case: Path, fresh: Path) -> list[str]:
    """Template-owned files of ``use_case`` that are missing or differ from ``fresh``."""
    problems = []
    for relative in rendered_files(fresh):
        mine = use_case / relative
        if not mine.exists():
            problems.append(f"{relative}: missing (the template renders it)")
        elif relative.name == ANSWERS_FILE:
            if not _answers_equal(mine, fresh / relative):
                problems.append(f"{relative}: answers differ")
        elif not filecmp.cmp(mine, fresh / relative, shallow=False):
            problems.append(f"{relative}: differs from the template's rendering")
    return problems


def sync(use_case: Path, fresh: Path) -> None:
    for relative in rendered_files(fresh):
        target = use_case / relative
        if (
            relative.name == ANSWERS_FILE
            and target.exists()
            and _answers_equal(target, fresh / relative)
        ):
            continue
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
