"""The labels table: Label Studio exports in, one row per labelled task.

One code path (SQLAlchemy Core) for SQLite under ``<state_dir>/labels.sqlite`` (local profile)
and PostgreSQL from the DSN in ``$<cluster.postgres_dsn_env>`` (cluster profile); the table is
brought to the ``labels`` schema's newest revision on first use (``cdl_gitlab.db``). Rows are
upserted by (split, task id), so importing the same export twice changes nothing. Malformed
export entries are rejected one by one with a message; the valid ones are imported.

Conflicting labels are reported, one line each and a count, and the import keeps the latest
label by annotation time (``created_at``) instead of failing: two non-cancelled annotations of one
task that disagree keep the newest one, and a re-import that changes a stored label replaces it
only when its annotation is not older; a person's label always replaces a generated one
(``GENERATED_LABELERS``: class folders, idx label files), whose time is the data commit's.
Relabeling is how labelers correct mistakes in Label Studio, so a failure would block the data
job on routine work; the report makes each disagreement visible for review without losing the
correction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cdl_gitlab.data.commits import DataVersion
from cdl_gitlab.data.errors import DataError
from cdl_gitlab.data.names import check_split
from cdl_gitlab.db import Schema, create_engine, ensure_schema, normalize_url, sqlite_url

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings

FOLDER_LABELER = "cdl-folder-labeler"
IDX_LABELER = "cdl-idx-labeler"
GENERATED_LABELERS = frozenset({FOLDER_LABELER, IDX_LABELER})
"""Labels the data format derives (class folders, idx label files), not a person's."""
FROM_NAME = "label"


@dataclass(frozen=True)
class LabelRecord:
    id: str
    split: str
    file_path: str
    label: str
    labeler: str
    created: str
    data_repo: str
    data_branch: str
    data_commit: str


@dataclass
class ImportReport:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.inserted} inserted, {self.updated} updated, {self.unchanged} unchanged, "
            f"{len(self.rejected)} rejected, {len(self.conflicts)} conflicts"
        )

    def add(self, other: ImportReport, prefix: str = "") -> None:
        """Add ``other``'s counts and messages (each prefixed with ``prefix``)."""
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.rejected.extend(prefix + message for message in other.rejected)
        self.conflicts.extend(prefix + message for message in other.conflicts)

    def lines(self) -> list[str]:
        """One line per rejected entry and per conflict."""
        return [f"rejected {m}" for m in self.rejected] + [f"conflict {m}" for m in self.conflicts]


def table_name(settings: Settings) -> str:
    return f"{settings.config.project.slug.replace('-', '_')}_labels"


def label_schema(name: str) -> Schema:
    """The ``labels`` schema of table ``name``, with its own version table (projects may
    share one PostgreSQL database)."""
    return Schema("labels", f"cdl_{name}_revision", {"table": name})


def make_table(name: str, metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("split", sa.String(16), primary_key=True),
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("file_path", sa.Text, nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("labeler", sa.String(200), nullable=False),
        sa.Column("created", sa.String(40), nullable=False),
        sa.Column("data_repo", sa.String(100), nullable=False),
        sa.Column("data_branch", sa.String(100), nullable=False),
        sa.Column("data_commit", sa.String(100), nullable=False),
        sa.Column("imported_at", sa.String(40), nullable=False),
    )


def database_url(settings: Settings) -> str:
    """SQLite locally; the PostgreSQL DSN from the environment on the cluster profile."""
    if settings.profile == "cluster":
        env = settings.config.cluster.postgres_dsn_env
        return normalize_url(settings.secret(env, "the labels table (PostgreSQL)"))
    return sqlite_url(settings.state_dir / "labels.sqlite")


class LabelStore:
    """The labels table of one project."""

    def __init__(self, url: str, name: str) -> None:
        self.engine = create_engine(url)
        self.metadata = sa.MetaData()
        self.table = make_table(name, self.metadata)
        ensure_schema(self.engine, label_schema(name))

    @classmethod
    def open(cls, settings: Settings) -> LabelStore:
        return cls(database_url(settings), table_name(settings))

    def close(self) -> None:
        self.engine.dispose()

    def _insert(self) -> Any:
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif self.engine.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            raise DataError(f"labels table: unsupported database {self.engine.dialect.name}")
        return insert(self.table)

    def upsert(self, records: Iterable[LabelRecord], report: ImportReport) -> None:
        rows = {(r.split, r.id): asdict(r) for r in records}
        if not rows:
            return
        now = dt.datetime.now(dt.UTC).isoformat()
        keys = [c.name for c in self.table.columns if c.name not in ("imported_at",)]
        with self.engine.begin() as conn:
            existing = {
                (row.split, row.id): tuple(getattr(row, k) for k in keys)
                for row in conn.execute(
                    sa.select(self.table).where(
                        self.table.c.split.in_({split for split, _ in rows})
                    )
                )
            }
            changed = []
            label_at, created_at = keys.index("label"), keys.index("created")
            for key, row in rows.items():
                old = existing.get(key)
                if old is not None and old[label_at] != row["label"]:
                    labeler = old[keys.index("labeler")]
                    keep_old, why = _winner(labeler, old[created_at], row)
                    kept = old[label_at] if keep_old else row["label"]
                    report.conflicts.append(
                        f"task {key[1]} ({row['file_path']}): stored label {old[label_at]!r} "
                        f"by {labeler} ({old[created_at]}), imported {row['label']!r} by "
                        f"{row['labeler']} ({row['created']}); kept {kept!r} ({why})"
                    )
                    if keep_old:
                        report.unchanged += 1
                        continue
                if old is None:
                    report.inserted += 1
                elif old != tuple(row[k] for k in keys):
                    report.updated += 1
                else:
                    report.unchanged += 1
                    continue
                changed.append({**row, "imported_at": now})
            if changed:
                statement = self._insert()
                statement = statement.on_conflict_do_update(
                    index_elements=["split", "id"],
                    set_={
                        k: statement.excluded[k]
                        for k in (*keys, "imported_at")
                        if k not in ("split", "id")
                    },
                )
                conn.execute(statement, changed)

    def count(self, split: str) -> int:
        """How many rows ``split`` has."""
        query = sa.select(sa.func.count()).select_from(self.table)
        with self.engine.connect() as conn:
            return int(conn.execute(query.where(self.table.c.split == split)).scalar_one())

    def rows(self, split: str) -> list[LabelRecord]:
        keys = [c.name for c in self.table.columns if c.name != "imported_at"]
        with self.engine.connect() as conn:
            result = conn.execute(
                sa.select(*(self.table.c[k] for k in keys))
                .where(self.table.c.split == split)
                .order_by(self.table.c.id)
            )
            return [LabelRecord(**row._mapping) for row in result]


def _winner(labeler: str, created: str, incoming: dict[str, Any]) -> tuple[bool, str]:
    """Whether a stored label (by ``labeler`` at ``created``) beats ``incoming``, and why: a
    person's label beats a generated one, else the later annotation wins (ties: the import)."""
    generated = labeler in GENERATED_LABELERS, incoming["labeler"] in GENERATED_LABELERS
    if generated[0] != generated[1]:
        return generated[1], "a person's label over a generated one"
    when = dt.datetime.fromisoformat
    return when(created) > when(incoming["created"]), "the latest"


# ---------------------------------------------------------------- Label Studio export parsing
def _labeler(annotation: dict[str, Any]) -> str:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        for key in ("email", "username", "id"):
            if who.get(key):
                return str(who[key])
    if who not in (None, ""):
        return str(who)
    return str(annotation.get("created_username") or "")


def _iso(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.isoformat()


def _choice(annotation: dict[str, Any]) -> Any:
    """The single chosen label of an annotation, or ``None`` when it has not exactly one."""
    choices = [
        result.get("value", {}).get("choices")
        for result in annotation.get("result") or []
        if isinstance(result, dict) and result.get("type") == "choices"
    ]
    if not choices or not isinstance(choices[0], list) or len(choices[0]) != 1:
        return None
    return choices[0][0]


def _latest(annotations: list[dict[str, Any]]) -> tuple[dict[str, Any], str | None]:
    """The newest annotation (by ``created_at``; the last listed on ties) and, when the
    annotations' labels disagree, a line saying so."""
    order = sorted(
        range(len(annotations)), key=lambda i: (_iso(annotations[i].get("created_at")) or "", i)
    )
    latest = annotations[order[-1]]
    labels = [(_choice(annotations[i]), annotations[i]) for i in order]
    if len({repr(label) for label, _ in labels}) <= 1:
        return latest, None
    said = ", ".join(
        f"{label!r} by {_labeler(a) or '?'} ({a.get('created_at')})" for label, a in labels
    )
    return latest, f"annotations disagree: {said}; kept {_choice(latest)!r} (the latest)"


def parse_entry(
    entry: Any, split: str, version: DataVersion | None, classes: list[str]
) -> LabelRecord:
    """One export entry -> a record; raises ``ValueError`` saying what is malformed."""
    return parse_annotated(entry, split, version, classes)[0]


def parse_annotated(
    entry: Any, split: str, version: DataVersion | None, classes: list[str]
) -> tuple[LabelRecord, str | None]:
    """One export entry -> (record, conflict line or ``None``); raises ``ValueError`` saying
    what is malformed."""
    if not isinstance(entry, dict):
        raise ValueError("not an object")
    task_id = entry.get("id")
    if task_id in (None, "") or isinstance(task_id, bool | dict | list):
        raise ValueError("no task id")
    data = entry.get("data")
    if not isinstance(data, dict):
        raise ValueError("no data object")
    path = data.get("path")
    if not isinstance(path, str) or not path.strip("/"):
        raise ValueError("data.path (the file path in the data repo) is missing")
    annotations = [
        a
        for a in entry.get("annotations") or []
        if isinstance(a, dict) and not a.get("was_cancelled")
    ]
    if not annotations:
        raise ValueError("no (non-cancelled) annotation")
    annotation, conflict = _latest(annotations)
    label = _choice(annotation)
    if label is None:
        raise ValueError("the annotation has no single choice (a choices result with one label)")
    if not isinstance(label, str) or not label:
        raise ValueError("the chosen label is not a string")
    if classes and label not in classes:
        raise ValueError(f"label {label!r} is not one of the classes {classes}")
    labeler = _labeler(annotation)
    if not labeler:
        raise ValueError("no labeler (completed_by)")
    created = _iso(annotation.get("created_at")) or _iso(entry.get("created_at"))
    if created is None:
        raise ValueError("no valid created_at date")
    repo = data.get("repo") or (version.repo if version else "")
    branch = data.get("branch") or (version.branch if version else "")
    commit = data.get("commit") or (version.commit if version else "")
    if not (repo and branch and commit):
        raise ValueError("no data version: data.repo/branch/commit missing and none given")
    record = LabelRecord(
        str(task_id),
        split,
        path.strip("/"),
        label,
        labeler,
        created,
        str(repo),
        str(branch),
        str(commit),
    )
    return record, (f"task {task_id} ({record.file_path}): {conflict}" if conflict else None)


def parse_export(
    payload: Any, split: str, version: DataVersion | None, classes: list[str]
) -> tuple[list[LabelRecord], ImportReport]:
    """Valid records of a Label Studio JSON export, and a report with one message per
    rejected entry and per task whose annotations disagree."""
    check_split(split)
    if not isinstance(payload, list):
        raise DataError("a Label Studio JSON export is a list of tasks")
    records: list[LabelRecord] = []
    report = ImportReport()
    for index, entry in enumerate(payload):
        try:
            record, conflict = parse_annotated(entry, split, version, classes)
        except ValueError as exc:
            task = entry.get("id") if isinstance(entry, dict) else None
            report.rejected.append(
                f"entry {index}" + (f" (task {task})" if task is not None else "") + f": {exc}"
            )
            continue
        records.append(record)
        if conflict:
            report.conflicts.append(conflict)
    return records, report


def import_export(
    labels: LabelStore,
    payload: Any,
    split: str,
    version: DataVersion | None,
    classes: list[str],
) -> ImportReport:
    records, report = parse_export(payload, split, version, classes)
    labels.upsert(records, report)
    return report


# ---------------------------------------------------------------- producing tasks and exports
def _task_id(path: str) -> int:
    return int(hashlib.sha256(path.encode()).hexdigest()[:12], 16)


def task_for(path: str, content: bytes, task: str, version: DataVersion) -> dict[str, Any]:
    """A Label Studio task for one validated file (text inline; images by local-files URL)."""
    data: dict[str, Any] = {
        "path": path,
        "repo": version.repo,
        "branch": version.branch,
        "commit": version.commit,
    }
    if task == "image":
        data["image"] = f"/data/local-files/?d={path}"
    else:
        data["text"] = content.decode("utf-8", errors="replace")
    return {"id": _task_id(path), "data": data}


def choice_annotation(task_id: Any, labeler: str, created: str, label: str) -> dict[str, Any]:
    """One Label Studio annotation choosing ``label`` for task ``task_id``."""
    return {
        "id": task_id,
        "completed_by": {"email": labeler},
        "created_at": created,
        "was_cancelled": False,
        "result": [
            {
                "from_name": FROM_NAME,
                "to_name": "item",
                "type": "choices",
                "value": {"choices": [label]},
            }
        ],
    }


def folder_labels(
    files: dict[str, bytes], task: str, version: DataVersion, created: str
) -> list[dict[str, Any]]:
    """A Label Studio export labelling each file by its class folder (no human labelers)."""
    export = []
    for path in sorted(files):
        entry = task_for(path, files[path], task, version)
        entry["annotations"] = [
            choice_annotation(entry["id"], FOLDER_LABELER, created, path.split("/", 1)[0])
        ]
        export.append(entry)
    return export


def dumps(payload: Any) -> bytes:
    return (json.dumps(payload, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
