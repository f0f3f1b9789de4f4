#!/usr/bin/env bash
# Set up this repository's development environment in .venv (idempotent).
#   bash scripts/setup.sh            everything: template tooling, both frameworks, serving, tests
# Re-running is fast when ci-library/pyproject.toml, requirements-dev.txt and the constraints
# have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' 2>/dev/null || {
  echo "setup: Python 3.11 is required (found: $("$PYTHON" --version 2>&1))" >&2; exit 1; }

VENV=.venv
STAMP="$VENV/.cdl-setup"
WANT=$(cat ci-library/pyproject.toml requirements-dev.txt template/constraints.txt | sha256sum | cut -c1-16)
# Tools the CI tests use: gitlab-ci-local (npm, project-local), check-jsonschema (own venv), rsync.
bash scripts/install-ci-tools.sh

if [[ -x "$VENV/bin/cdl" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  echo "setup: $VENV is up to date"
  exit 0
fi

[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "pip<26" "setuptools<81" wheel
# torch first: pip takes the CPU wheel (docs/design.md); a plain resolve would fetch a CUDA build.
"$VENV/bin/pip" install --quiet --disable-pip-version-check torch==2.13.0
# The package under its former distribution name `cdl` (before 0.2.0) would shadow the command.
"$VENV/bin/pip" uninstall --quiet --yes cdl >/dev/null 2>&1 || true
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  -c template/constraints.txt -r requirements-dev.txt
echo "$WANT" > "$STAMP"
echo "setup: $VENV ready ($("$VENV/bin/cdl" --version))"
