#!/usr/bin/env bash
# Installs the tools the CI-component tests need, project-locally and idempotently:
#   - gitlab-ci-local 4.73.0 (npm, into .tools/node; 4.74+ needs Node 22)
#   - check-jsonschema (its own venv .venv-tools: it needs jsonschema>=4, the main
#     venv keeps jsonschema<4 for seldon-core)
#   - rsync (gitlab-ci-local copies the work tree with it), via apt-get when missing
#   - the release tools (.venv-release): the library release pipeline's pinned build, twine,
#     setuptools and wheel (its `RELEASE_TOOLS`, so the job finds them installed), and
#     pypiserver, the local package index the release test uploads to
#   - the MLflow tracking server (.venv-mlflow): the full `mlflow` package (its server pins
#     conflict with the training stack; the main venv has only the mlflow-skinny client) and
#     psycopg 3 for a PostgreSQL backend store (SQLAlchemy 2.1 maps postgresql:// to it);
#     the mlflow registry tests start it on 127.0.0.1
#   - MLServer (.venv-mlserver, python3.11): serving.engine mlserver. torch 2.13.0 (CPU) first,
#     then mlserver 1.7.1 and this checkout's ci-library with its serve-mlserver extra
#     (editable); its pins conflict with seldon-core's (see ci-library/pyproject.toml), so it
#     cannot share the main venv. The MLServer tests start it on 127.0.0.1.
# Usage: scripts/install-ci-tools.sh [--check]   (--check: report, install nothing)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GCL_VERSION="4.73.0"
CJS_VERSION="0.39.0"
NODE_PREFIX="${CDL_TOOLS_NODE_PREFIX:-$ROOT/.tools/node}"
TOOLS_VENV="${CDL_TOOLS_VENV:-$ROOT/.venv-tools}"
RELEASE_VENV="${CDL_RELEASE_VENV:-$ROOT/.venv-release}"
# the library pipeline's RELEASE_TOOLS variable (ci-library/.gitlab-ci.yml), plus the index
RELEASE_TOOLS="$(sed -n 's/^  RELEASE_TOOLS: //p' "$ROOT/ci-library/.gitlab-ci.yml") pypiserver==2.4.2"
MLFLOW_VENV="${CDL_MLFLOW_VENV:-$ROOT/.venv-mlflow}"
# the server matches the client pin in template/constraints.txt
MLFLOW_VERSION="$(sed -n 's/^mlflow-skinny==//p' "$ROOT/template/constraints.txt")"
MLFLOW_TOOLS="mlflow==$MLFLOW_VERSION psycopg==3.3.9 psycopg-binary==3.3.9"
MLSERVER_VENV="${CDL_MLSERVER_VENV:-$ROOT/.venv-mlserver}"
MLSERVER_PINS="torch==2.13.0 mlserver==1.7.1"
MLSERVER_PYTHON="${MLSERVER_PYTHON:-python3.11}"
PYTHON="${PYTHON:-python3}"
CHECK_ONLY=0
[[ "${1:-}" == "--check" ]] && CHECK_ONLY=1

log() { printf 'install-ci-tools: %s\n' "$*" >&2; }
missing=0

# -- rsync --------------------------------------------------------------------
if command -v rsync >/dev/null 2>&1; then
  log "rsync: $(command -v rsync)"
elif (( CHECK_ONLY )); then
  log "rsync: missing"; missing=1
else
  log "rsync: installing with apt-get"
  if [[ $(id -u) -eq 0 ]]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq rsync >/dev/null
fi

# -- gitlab-ci-local ------------------------------------------------------------
GCL="$NODE_PREFIX/bin/gitlab-ci-local"
have_gcl=""
if [[ -x "$GCL" ]]; then have_gcl="$("$GCL" --version 2>/dev/null || true)"; fi
if [[ "$have_gcl" == "$GCL_VERSION" ]]; then
  log "gitlab-ci-local $GCL_VERSION: $GCL"
elif (( CHECK_ONLY )); then
  log "gitlab-ci-local $GCL_VERSION: missing (found '${have_gcl:-none}')"; missing=1
else
  command -v npm >/dev/null 2>&1 || { log "npm is needed (Node 20)"; exit 1; }
  log "gitlab-ci-local: npm install -g --prefix $NODE_PREFIX gitlab-ci-local@$GCL_VERSION"
  mkdir -p "$NODE_PREFIX"
  npm install --global --prefix "$NODE_PREFIX" --no-audit --no-fund --loglevel=error \
    "gitlab-ci-local@$GCL_VERSION" >&2
  [[ "$("$GCL" --version)" == "$GCL_VERSION" ]] || { log "gitlab-ci-local install failed"; exit 1; }
fi

# -- check-jsonschema -----------------------------------------------------------
CJS="$TOOLS_VENV/bin/check-jsonschema"
have_cjs=""
if [[ -x "$CJS" ]]; then have_cjs="$("$CJS" --version 2>/dev/null | awk '{print $NF}' || true)"; fi
if [[ "$have_cjs" == "$CJS_VERSION" ]]; then
  log "check-jsonschema $CJS_VERSION: $CJS"
elif (( CHECK_ONLY )); then
  log "check-jsonschema $CJS_VERSION: missing (found '${have_cjs:-none}')"; missing=1
else
  log "check-jsonschema $CJS_VERSION: installing into $TOOLS_VENV"
  [[ -x "$TOOLS_VENV/bin/pip" ]] || "$PYTHON" -m venv "$TOOLS_VENV"
  # (the grep drops pip's notes about configured local indexes that do not exist here)
  "$TOOLS_VENV/bin/pip" install --quiet --disable-pip-version-check "check-jsonschema==$CJS_VERSION" \
    2> >(grep -v "^WARNING: Location" >&2)
  [[ "$("$CJS" --version | awk '{print $NF}')" == "$CJS_VERSION" ]] || { log "check-jsonschema install failed"; exit 1; }
fi

# -- pinned tool venvs ---------------------------------------------------------------
# venv_has VENV PIN...: whether VENV's python has exactly these name==version pins
venv_has() {
  local venv="$1"; shift
  [[ -x "$venv/bin/python" ]] && "$venv/bin/python" - "$@" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
for pin in sys.argv[1:]:
    name, _, wanted = pin.partition("==")
    try:
        if version(name).split("+")[0] != wanted:  # 2.13.0+cpu is 2.13.0
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
}
# pinned_venv LABEL VENV PIN...: report, or (unless --check) install the pins into VENV
pinned_venv() {
  local label="$1" venv="$2"; shift 2
  if venv_has "$venv" "$@"; then
    log "$label ($*): $venv"
  elif (( CHECK_ONLY )); then
    log "$label ($*): missing in $venv"; missing=1
  else
    log "$label: installing $* into $venv"
    [[ -x "$venv/bin/pip" ]] || "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$@" \
      2> >(grep -v "^WARNING: Location" >&2)
    venv_has "$venv" "$@" || { log "$label install failed"; exit 1; }
  fi
}

# -- release tools -------------------------------------------------------------------
pinned_venv "release tools" "$RELEASE_VENV" $RELEASE_TOOLS

# -- MLflow tracking server -------------------------------------------------------------
pinned_venv "MLflow server" "$MLFLOW_VENV" $MLFLOW_TOOLS

# -- MLServer (serving.engine mlserver) -----------------------------------------------------
# the stamp records what was installed: the pins and the ci-library's extra (rerun when they
# change); cdl-gitlab must import in it too
MLSERVER_STAMP="$MLSERVER_VENV/.cdl-stamp"
mlserver_want="$MLSERVER_PINS -e $ROOT/ci-library[serve-mlserver] $(sed -n '/^serve-mlserver = \[/,/^]/p' "$ROOT/ci-library/pyproject.toml" | tr -d ' \n')"
if venv_has "$MLSERVER_VENV" $MLSERVER_PINS && [[ "$(cat "$MLSERVER_STAMP" 2>/dev/null)" == "$mlserver_want" ]] \
    && "$MLSERVER_VENV/bin/python" -c "import cdl_gitlab, mlserver" 2>/dev/null; then
  log "MLServer ($MLSERVER_PINS): $MLSERVER_VENV"
elif (( CHECK_ONLY )); then
  log "MLServer ($MLSERVER_PINS): missing in $MLSERVER_VENV"; missing=1
else
  log "MLServer: installing $MLSERVER_PINS and ci-library[serve-mlserver] into $MLSERVER_VENV"
  [[ -x "$MLSERVER_VENV/bin/pip" ]] || "$MLSERVER_PYTHON" -m venv "$MLSERVER_VENV"
  # torch first: pip takes the CPU wheel (from the local wheel folder where there is one)
  "$MLSERVER_VENV/bin/pip" install --quiet --disable-pip-version-check "torch==2.13.0" \
    2> >(grep -v "^WARNING: Location" >&2)
  "$MLSERVER_VENV/bin/pip" install --quiet --disable-pip-version-check "mlserver==1.7.1" \
    -e "$ROOT/ci-library[serve-mlserver]" 2> >(grep -v "^WARNING: Location" >&2)
  venv_has "$MLSERVER_VENV" $MLSERVER_PINS || { log "MLServer install failed"; exit 1; }
  printf '%s' "$mlserver_want" > "$MLSERVER_STAMP"
fi

if (( CHECK_ONLY )); then exit "$missing"; fi
log "done: gitlab-ci-local=$GCL check-jsonschema=$CJS release tools=$RELEASE_VENV mlflow=$MLFLOW_VENV mlserver=$MLSERVER_VENV"
