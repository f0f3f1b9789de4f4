"""Copier migration 0.2.0: the package `cdl` became `cdl-gitlab` (import `cdl_gitlab`).

Runs after `copier update` brings a project from a release before 0.2.0 (the template's
files are already new then) and rewrites the project's own files: those git tracks or would
track (ignored files, `.git` and virtual environments are left alone).

- Python: `import cdl`, `import cdl.x`, `from cdl import ...`, `from cdl.x import ...`,
  `python -m cdl`, and dotted names of the 0.1.0 modules (``cdl.features``) become
  `cdl_gitlab`;
- requirements: `cdl[extras]`, `cdl==`, `cdl>=` ... become `cdl-gitlab[...]`,
  `cdl-gitlab==` ... (Makefiles, requirements files, Dockerfiles, CI files).

The command `cdl`, `cdl.yaml`, labels such as `cdl.dev/environment` and names like
`cdl_requirement` are not touched. Stdlib only; prints one line per changed file.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

# The modules of cdl 0.1.0: only these are rewritten as dotted names outside imports.
MODULES_010 = (
    "cli|config|data|deploy|errors|features|fsutil|lineage|logs|model|monitor|registry"
    "|schemas|scoring"
)
_RULES: list[tuple[re.Pattern[str], str]] = [
    # import statements (also inside strings and docs: the same text is an import there)
    (re.compile(r"(?m)^(\s*from\s+)cdl(?=(\.[A-Za-z_]|\s+import\b))"), r"\1cdl_gitlab"),
    (re.compile(r"(?m)^(\s*import\s+)cdl(?=(\.[A-Za-z_]|\s|,|$))"), r"\1cdl_gitlab"),
    (re.compile(r"(?<![\w.-])-m\s+cdl(?=(\s|$|['\"]))"), "-m cdl_gitlab"),
    # dotted module names of 0.1.0 (``cdl.features``, "cdl.deploy.server")
    (re.compile(rf"(?<![\w./-])cdl\.(?=({MODULES_010})\b)(?!\w+/)"), "cdl_gitlab."),
    # requirement names: cdl[...] and cdl followed by a version operator
    (re.compile(r"(?<![\w./$-])cdl(?=\[|\s*(==|>=|<=|~=|!=|===|>|<)\s*[0-9$])"), "cdl-gitlab"),
]
_SKIP_DIRS = {".git", ".venv", ".cdl", ".cdl-venv", ".gitlab-ci-local", "__pycache__"}
_SKIP_FILES = {".copier-answers.yml"}


def rewrite(text: str) -> str:
    """``text`` with every `cdl` package reference renamed (see the module doc)."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


def project_files(root: Path) -> list[Path]:
    """Tracked and untracked-but-not-ignored files; every file outside tool folders when
    ``root`` is not a git work tree."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout.decode()
        names = [name for name in out.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        names = []
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
            names += [str((Path(folder) / f).relative_to(root)) for f in files]
    return [root / name for name in sorted(set(names)) if Path(name).name not in _SKIP_FILES]


def migrate(root: Path) -> list[Path]:
    """Rewrite the project's files in place; return the changed ones."""
    changed = []
    for path in project_files(root):
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192] or b"cdl" not in data:
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        new = rewrite(text)
        if new != text:
            path.write_text(new, encoding="utf-8", newline="")
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--project-dir", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    root = args.project_dir.resolve()
    changed = migrate(root)
    source = os.environ.get("VERSION_PEP440_FROM") or os.environ.get("VERSION_FROM") or "?"
    target = os.environ.get("VERSION_PEP440_TO") or os.environ.get("VERSION_TO") or "?"
    for path in changed:
        print(f"migration 0.2.0 (cdl -> cdl-gitlab): rewrote {path.relative_to(root)}")
    print(
        f"migration 0.2.0 (cdl -> cdl-gitlab), {source} -> {target}: "
        f"{len(changed)} file(s) rewritten",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
