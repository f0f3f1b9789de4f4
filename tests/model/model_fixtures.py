"""Tiny generated projects for the model tests: rendered model code, cdl.yaml, labelled data
in the real local data store (validated repos + labels table)."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
from PIL import Image

from cdl_gitlab.config import Settings, load_settings
from rendering import render_subtree

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template"
TEXT_CLASSES = ["business", "sport", "tech"]
IMAGE_CLASSES = ["bars", "stripes", "dots"]

_COMMON_TEXT = "the a of and to in is was for on that with as it by at from this be are"
_CLASS_TEXT = {
    "business": "market shares profit company bank economy investors growth sales",
    "sport": "match team goal season player coach league win championship cup",
    "tech": "software computer internet mobile users digital network chip phone",
}
_COMMON = tuple(_COMMON_TEXT.split(" "))
_CLASS_WORDS = {label: tuple(text.split(" ")) for label, text in _CLASS_TEXT.items()}
_ALL_CLASS_WORDS = tuple(word for words in _CLASS_WORDS.values() for word in words)


def render_tree(subdir: str, dest: Path, answers: dict) -> list[Path]:
    """Render the template's ``subdir`` into ``dest/<subdir>`` with Copier."""
    return render_subtree(subdir, dest, answers)


def text_corpus(per_class: int, seed: int, classes: list[str] = TEXT_CLASSES) -> dict[str, bytes]:
    """Documents of common words plus words specific to their class, ``<class>/<n>.txt``."""
    rng = random.Random(seed)
    files = {}
    for label in classes:
        for n in range(per_class):
            words = rng.choices(_COMMON, k=30) + rng.choices(_CLASS_WORDS[label], k=8)
            words += rng.choices(_ALL_CLASS_WORDS, k=4)  # some confusion
            rng.shuffle(words)
            files[f"{label}/{seed}-{n:04d}.txt"] = (" ".join(words) + ".\n").encode()
    return files


def image_array(label: str, rng: np.random.Generator, size: int = 28) -> np.ndarray:
    pixels = rng.uniform(0, 60, (size, size))
    if label == "bars":
        pixels[:, ::4] += 180
    elif label == "stripes":
        pixels[::4, :] += 180
    else:
        pixels[2::6, 2::6] += 190
    return np.clip(pixels, 0, 255).astype(np.uint8)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def image_corpus(per_class: int, seed: int, classes: list[str] = IMAGE_CLASSES) -> dict[str, bytes]:
    """28x28 grayscale PNGs with a class-specific pattern over noise, ``<class>/<n>.png``."""
    rng = np.random.default_rng(seed)
    return {
        f"{label}/{seed}-{n:04d}.png": png_bytes(image_array(label, rng))
        for label in classes
        for n in range(per_class)
    }


def write_config(root: Path, framework: str, task: str, threshold: float) -> None:
    classes = TEXT_CLASSES if task == "text" else IMAGE_CLASSES
    root.joinpath("cdl.yaml").write_text(
        f"""\
version: 1
project: {{name: Tiny {task}, slug: tiny-{task}}}
profile: local
model: {{name: tiny-{task}, framework: {framework}, task: {task}, classes: {classes}}}
data: {{repo_prefix: tiny-{task}}}
training: {{accuracy_threshold: {threshold}}}
""",
        encoding="utf-8",
    )
    root.joinpath(".detignore").write_text((TEMPLATE / ".detignore").read_text())


def ingest(settings: Settings, split: str, files: dict[str, bytes]) -> None:
    """Commit ``files`` to the split's validated repo and import folder labels for them."""
    from cdl_gitlab.data.labeling import generate_export, import_payload
    from cdl_gitlab.data.names import validated_repo
    from cdl_gitlab.data.stores import open_store

    store = open_store(settings)
    repo = validated_repo(settings, split)
    if repo not in store.list_repos():
        store.create_repo(repo)
    store.put(repo, settings.config.data.branch, files, message=f"test {split} data")
    import_payload(settings, store, generate_export(settings, store, split), split)


def make_project(
    root: Path,
    framework: str,
    task: str,
    *,
    threshold: float = 0.5,
    per_class: int = 40,
    test_per_class: int = 15,
    hparams: dict | None = None,
) -> Settings:
    """A project with rendered model/test code, small hparams and labelled data."""
    root.mkdir(parents=True, exist_ok=True)
    write_config(root, framework, task, threshold)
    classes = TEXT_CLASSES if task == "text" else IMAGE_CLASSES
    answers = {
        "project_slug": f"tiny-{task}",
        "model_name": f"tiny-{task}",
        "framework": framework,
        "task": task,
        "starter": "blank",
        "class_names": ",".join(classes),
        "accuracy_threshold": threshold,
    }
    render_tree("model", root, answers)
    render_tree("test", root, answers)
    small = {"global_batch_size": 16, "learning_rate": 0.01, "epochs": 3, "dropout": 0.1}
    small.update(
        {"vocab_size": 60, "hidden1": 32, "hidden2": 16, "hidden3": 16, "hidden4": 8}
        if task == "text"
        else {"hidden": 32, "filters1": 4, "filters2": 8}
    )
    small.update(hparams or {})
    set_hparams(root / "model" / "const.yaml", small)
    settings = load_settings(root / "cdl.yaml")
    corpus = text_corpus if task == "text" else image_corpus
    ingest(settings, "train", corpus(per_class, seed=1))
    ingest(settings, "test", corpus(test_per_class, seed=2))
    return settings


def set_hparams(config: Path, values: dict) -> None:
    import yaml

    data = yaml.safe_load(config.read_text())
    data["hyperparameters"].update(values)
    config.write_text(yaml.safe_dump(data, sort_keys=False))
