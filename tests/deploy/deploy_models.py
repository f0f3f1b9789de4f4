"""Tiny trained models in the real checkpoint format, and projects that serve them.

The checkpoints are written with the shared code (``cdl_gitlab.model.checkpoint``,
``cdl_gitlab.features``, the networks' builders), trained for a few seconds on synthetic data whose
classes are easy to tell apart, so predictions on known inputs are certain.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cdl_gitlab.config import Settings, load_settings
from cdl_gitlab.features.image import ImageDecoder
from cdl_gitlab.features.labels import LabelEncoder
from cdl_gitlab.features.state import FeatureState
from cdl_gitlab.features.text import TextVectorizer
from cdl_gitlab.model.checkpoint import WEIGHTS, ModelSpec, write_model_files
from cdl_gitlab.registry import Checkpoint, LocalRegistry
from rendering import render_subtree

REPO_ROOT = Path(__file__).resolve().parents[2]

TEXT_CLASSES = ["politics", "sport", "tech"]
TEXT_WORDS = {
    "politics": [
        "election",
        "minister",
        "vote",
        "party",
        "government",
        "policy",
        "parliament",
        "law",
    ],
    "sport": ["football", "goal", "match", "team", "league", "score", "coach", "player"],
    "tech": ["computer", "software", "chip", "internet", "network", "digital", "data", "phone"],
}
FILLER = ["the", "a", "today", "new", "report", "said", "on", "in", "of"]
KNOWN_TEXTS = {
    "the football team scored a late goal to win the league match": "sport",
    "the minister said parliament will vote on the new election law": "politics",
    "a new phone chip makes internet software faster": "tech",
}
IMAGE_CLASSES = ["top", "bottom", "left"]
LINEAGE = {
    "code": {"commit": "0123456789abcdef0123456789abcdef01234567"},
    "data": {"train": {"repo": "demo-train", "commit": "c0ffee"}},
    "metrics": {"validation": {"accuracy": 1.0}},
}

CDL_YAML = """\
version: 1
project: {{name: Demo, slug: demo}}
profile: local
model: {{name: {model}, framework: {framework}, task: {task}}}
data: {{repo_prefix: demo}}
deployment:
  replicas: 2
  cpu: 250m
  memory: 512Mi
  max_batch: 8
  max_text_chars: 2000
  compression: {{enabled: true, max_accuracy_drop: 0.05, latency_runs: 20}}
cluster:
  namespace: demo-ns
  image_prefix: registry.example.org/group/demo
  postgres_dsn_env: CDL_TEST_POSTGRES_DSN
"""


def text_corpus(per_class: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for label, words in TEXT_WORDS.items():
        for _ in range(per_class):
            chosen = rng.choices(words, k=rng.randint(4, 9)) + rng.choices(FILLER, k=4)
            rng.shuffle(chosen)
            texts.append(" ".join(chosen))
            labels.append(label)
    return texts, labels


def images(per_class: int, seed: int) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    pixels, labels = [], []
    for label in IMAGE_CLASSES:
        for _ in range(per_class):
            image = rng.uniform(0.0, 0.2, size=(28, 28))
            if label == "top":
                image[:12] += 0.7
            elif label == "bottom":
                image[16:] += 0.7
            else:
                image[:, :12] += 0.7
            pixels.append(np.clip(image, 0, 1))
            labels.append(label)
    return np.asarray(pixels, dtype=np.float32), labels


def known_images() -> dict[str, np.ndarray]:
    pixels, labels = images(1, seed=99)
    return {label: image for image, label in zip(pixels, labels, strict=True)}


def _spec(framework: str, task: str, shape: list[int], classes: list[str], hp: dict) -> ModelSpec:
    return ModelSpec(
        framework=framework,
        task=task,
        input_shape=shape,
        classes=classes,
        hparams=hp,
        data={"repo": "demo-train", "commit": "c0ffee"},
    )


def news_sized_texts(count: int, seed: int, vocabulary: int = 10_000) -> list[str]:
    """Article-length synthetic texts over ``vocabulary`` pseudo-words (benchmarks)."""
    rng = random.Random(seed)
    words = [f"w{n:05d}x" for n in range(vocabulary)]
    return [" ".join(rng.choices(words, k=400)) for _ in range(count)]


def torch_text_checkpoint(folder: Path, seed: int = 0, news_sized: bool = False) -> Path:
    """A PyTorch text baseline trained on the synthetic corpus: narrow by default; with
    ``news_sized`` the default widths and a 10,000-stem vocabulary (the news model's shape)."""
    import torch

    from cdl_gitlab.model.networks_torch import build_network

    texts, labels = text_corpus(40, seed)
    extra = news_sized_texts(30, seed) if news_sized else []
    vectorizer = TextVectorizer.fit(texts + extra, max_features=10_000)
    features = FeatureState(vectorizer, LabelEncoder(TEXT_CLASSES))
    hparams = {"hidden1": 32, "hidden2": 32, "hidden3": 16, "hidden4": 16, "dropout": 0.0}
    if news_sized:
        hparams = {"dropout": 0.0}
    torch.manual_seed(seed)
    network = build_network("text", [features.transform.size], len(TEXT_CLASSES), hparams)
    x = torch.from_numpy(features.inputs(texts))
    y = torch.from_numpy(features.labels.encode(labels))
    optimizer = torch.optim.Adam(network.parameters(), lr=0.01)
    for _ in range(60):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(network(x), y)
        loss.backward()
        optimizer.step()
    folder.mkdir(parents=True, exist_ok=True)
    spec = _spec("pytorch", "text", [features.transform.size], TEXT_CLASSES, hparams)
    write_model_files(folder, spec, features)
    torch.save(network.eval().state_dict(), folder / WEIGHTS["pytorch"])
    return folder


def keras_image_checkpoint(folder: Path, seed: int = 0) -> Path:
    """A Keras image MLP trained on the synthetic band images."""
    import tensorflow as tf

    from cdl_gitlab.model.networks_keras import build_network

    pixels, labels = images(40, seed)
    features = FeatureState(ImageDecoder(28, 28), LabelEncoder(IMAGE_CLASSES))
    hparams = {"arch": "mlp", "hidden": 16, "dropout": 0.0}
    tf.keras.utils.set_random_seed(seed)
    model = build_network("image", [28, 28], len(IMAGE_CLASSES), hparams)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(0.01),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(pixels, features.labels.encode(labels), epochs=15, batch_size=32, verbose=0)
    folder.mkdir(parents=True, exist_ok=True)
    write_model_files(folder, _spec("keras", "image", [28, 28], IMAGE_CLASSES, hparams), features)
    model.save_weights(str(folder / WEIGHTS["keras"]))
    return folder


def torch_image_checkpoint(folder: Path, seed: int = 0) -> Path:
    """A PyTorch image MLP trained on the synthetic band images (the MLServer environment has
    no TensorFlow: MLServer 1.7 needs protobuf>=5, TensorFlow 2.15 protobuf<5)."""
    import torch

    from cdl_gitlab.model.networks_torch import build_network

    pixels, labels = images(40, seed)
    features = FeatureState(ImageDecoder(28, 28), LabelEncoder(IMAGE_CLASSES))
    hparams = {"arch": "mlp", "hidden": 16, "dropout": 0.0}
    torch.manual_seed(seed)
    network = build_network("image", [28, 28], len(IMAGE_CLASSES), hparams)
    x = torch.from_numpy(np.asarray(pixels, dtype=np.float32))
    y = torch.from_numpy(features.labels.encode(labels))
    optimizer = torch.optim.Adam(network.parameters(), lr=0.01)
    for _ in range(80):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(network(x), y)
        loss.backward()
        optimizer.step()
    folder.mkdir(parents=True, exist_ok=True)
    write_model_files(folder, _spec("pytorch", "image", [28, 28], IMAGE_CLASSES, hparams), features)
    torch.save(network.eval().state_dict(), folder / WEIGHTS["pytorch"])
    return folder


def render_deployment(root: Path, answers: dict[str, Any]) -> Path:
    """Render the template's deployment/ folder into ``root/deployment`` with Copier."""
    render_subtree("deployment", root, answers)
    return root / "deployment"


def make_project(
    root: Path, framework: str, task: str, model: str, engine: str = "seldon"
) -> Settings:
    """A project folder: cdl.yaml (``serving.engine``: ``engine``) and the rendered
    deployment/ folder."""
    root.mkdir(parents=True, exist_ok=True)
    config = CDL_YAML.format(model=model, framework=framework, task=task)
    if engine != "seldon":
        config += f"serving:\n  engine: {engine}\n"
    (root / "cdl.yaml").write_text(config, encoding="utf-8")
    render_deployment(
        root,
        {
            "project_slug": "demo",
            "model_name": model,
            "framework": framework,
            "task": task,
            "starter": "blank",
            "include_compression": True,
            "include_monitoring": True,
            "image_prefix": "",
            "kubernetes_namespace": "demo-ns",
        },
    )
    return load_settings(root / "cdl.yaml")


def register(settings: Settings, checkpoint: Path, uuid: str = "ckpt-0001") -> int:
    registry = LocalRegistry(settings.state_dir / "registry")
    version = registry.register_version(
        settings.config.model.name, Checkpoint(uuid, checkpoint), {"lineage": LINEAGE}
    )
    return version.version


class Served:
    """A running local server of a test project."""

    def __init__(self, settings: Settings, info, scoring_url: str | None) -> None:
        self.settings = settings
        self.info = info
        self.scoring_url = scoring_url
        self.url = info.url
        self.predict_url = info.predict_url
        self.metrics_url = f"http://127.0.0.1:{info.metrics_port}/metrics"


def serve_project(settings: Settings, scoring_url: str | None = None) -> Iterator[Served]:
    """Serve ``settings``' project with its engine's real server until the generator closes."""
    from cdl_gitlab.serving import local_server

    previous = os.environ.get("CDL_SCORING_URL")
    if scoring_url:
        os.environ["CDL_SCORING_URL"] = scoring_url
    try:
        info, process = local_server.serve(
            settings, 1, local_server.free_port(), local_server.free_port(), threads=2
        )
    finally:
        if scoring_url:
            if previous is None:
                os.environ.pop("CDL_SCORING_URL", None)
            else:
                os.environ["CDL_SCORING_URL"] = previous
    try:
        yield Served(settings, info, scoring_url)
    finally:
        local_server.stop(settings)
        local_server.stop_group(process.pid, grace=5)


MLSERVER_VENV = Path(os.environ.get("CDL_MLSERVER_VENV", REPO_ROOT / ".venv-mlserver"))


def mlserver_executable() -> Path:
    """MLServer's executable for the tests: ``$CDL_MLSERVER``, else ``bin/mlserver`` of
    ``$CDL_MLSERVER_VENV`` or the repository's ``.venv-mlserver`` (a worktree's may be a
    symlink to the main checkout's; scripts/install-ci-tools.sh creates it). Missing: a
    failure under CI, else a skip with the reason."""
    import pytest

    explicit = os.environ.get("CDL_MLSERVER")
    path = Path(explicit) if explicit else MLSERVER_VENV / "bin" / "mlserver"
    if path.is_file():
        return path
    reason = f"MLServer not installed ({path}): run scripts/install-ci-tools.sh"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)
