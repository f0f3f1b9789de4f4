"""Import Label Studio exports into the labels table: the step of the ``*-store-labels`` pipelines.

Reads ``/pfs/labels/*.json`` (exports) and the validated data commit id of input ``data``;
upserts one row per task (idempotent) into SQLite (local profile) or PostgreSQL (cluster
profile, DSN from the secret named in the spec) and writes ``labels-import.json`` to /pfs/out.
"""

from __future__ import annotations

from cdl_gitlab.cli.scripts import run_script
from cdl_gitlab.data.labeling import store_labels_step

if __name__ == "__main__":
    run_script(store_labels_step)
