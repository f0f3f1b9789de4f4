"""Helpers of the data-pipeline tests: a small CDL project and generated corpora."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from cdl_gitlab.config import Settings, load_settings
from rendering import render_subtree

REPO_ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["business", "sport", "tech"]
WORDS = (
    "market",
    "growth",
    "shares",
    "profit",
    "team",
    "match",
    "goal",
    "season",
    "phone",
    "software",
    "chip",
    "network",
    "minister",
    "economy",
    "player",
    "league",
    "device",
    "internet",
    "bank",
    "price",
    "coach",
    "result",
    "data",
)

CDL_YAML = """\
version: 1
project: {{name: Demo, slug: demo}}
profile: local
model: {{name: demo, framework: pytorch, task: {task}, classes: {classes}}}
data:
  source: "{source}"
  repo_prefix: demo
  split: {{seed: 7, test_ratio: 0.25}}
  min_items: {min_items}
  validation: {{min_chars: 40, max_bytes: 4000, extensions: [{extension}]}}
"""

ANSWERS: dict[str, Any] = {
    "project_name": "Demo",
    "project_slug": "demo",
    "model_name": "demo",
    "starter": "news",
    "task": "text",
    "framework": "pytorch",
    "class_names": ",".join(CLASSES),
    "data_source": "",
    "profile": "local",
    "accuracy_threshold": 0.9,
    "include_compression": False,
    "include_monitoring": False,
    "image_prefix": "",
    "postgres_dsn_env": "CDL_POSTGRES_DSN",
    "ci_library_version": "0.2.0",
}


def render_data_folder(dest: Path, **answers: Any) -> Path:
    """Render the template's data/ folder into ``dest/data`` with Copier."""
    render_subtree("data", dest, {**ANSWERS, **answers})
    return dest / "data"


def article(rng: random.Random, label: str, words: int = 60) -> str:
    body = " ".join(rng.choice(WORDS) for _ in range(words))
    return f"{label.title()} headline {rng.randrange(10**9)}\n\n{body}.\n"


def make_corpus(root: Path, per_class: int = 12, seed: int = 0, bad: bool = True) -> dict[str, str]:
    """A BBC-layout corpus (<class>/NNN.txt) with bad files; returns path -> expected reason."""
    rng = random.Random(seed)
    expected: dict[str, str] = {}
    for label in CLASSES:
        for index in range(per_class):
            path = root / label / f"{index:03d}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(article(rng, label), encoding="utf-8")
            expected[f"{label}/{index:03d}.txt"] = ""
    if bad:
        bad_files: dict[str, tuple[bytes, str]] = {
            "business/900.txt": (b"", "empty"),
            "business/901.txt": (b"   \n\t\n", "empty"),
            "sport/902.txt": (b"\x00\x01PK\x03\x04" + bytes(range(256)) * 4, "binary"),
            "sport/903.txt": (b"way too short", "too_short"),
            "tech/904.txt": (b"x" * 5000, "oversized"),
            "tech/905.jpg": (article(rng, "tech").encode(), "extension"),
            "tech/906.txt": (("Caf\u00e9 r\u00e9sum\u00e9 na\u00efve " * 5).encode("latin-1"), ""),
            "README.TXT": (b"About this corpus " * 10, "outside_class_folder"),
        }
        for rel, (content, reason) in bad_files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(content)
            expected[rel] = reason
    return expected


def create_project(
    root: Path,
    task: str = "text",
    source: str = "",
    classes: list[str] | None = None,
    extension: str = '".txt"',
    render: bool = True,
    min_items: int = 5,
) -> Settings:
    """A CDL project in ``root``: cdl.yaml and the rendered data/ folder."""
    root.mkdir(parents=True, exist_ok=True)
    text = CDL_YAML.format(
        task=task,
        source=source,
        extension=extension,
        classes=classes if classes is not None else CLASSES,
        min_items=min_items,
    )
    (root / "cdl.yaml").write_text(text.replace("'", '"'), encoding="utf-8")
    if render:
        render_data_folder(root, task=task)
    return load_settings(root / "cdl.yaml", "local")
