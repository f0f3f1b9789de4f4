"""Fashion-MNIST data pipeline on generated idx files, in a project rendered with starter=fashion:
collection from a mirror or a base URL, the given train/test split, validation, idx labels."""

from __future__ import annotations

import functools
import http.server
import io
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cdl_gitlab.config import Settings, load_settings
from cdl_gitlab.data.dataset import load_split
from cdl_gitlab.data.errors import DataError
from cdl_gitlab.data.formats import idx_files as idx
from cdl_gitlab.data.formats.idx import FILES, IDX_LABELER, IdxFormat, canonical_names, class_slug
from cdl_gitlab.data.labels import LabelStore
from cdl_gitlab.data.steps import pipeline
from cdl_gitlab.data.stores.local_store import LocalStore
from rendering import render
from use_cases.fashion_data import FASHION_CLASSES, write_mirror

N_TRAIN, N_TEST = 600, 200
SLUGS = [
    "t-shirt-top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mirror(tmp_path_factory.mktemp("mirror"), N_TRAIN, N_TEST)


@pytest.fixture(scope="module")
def fashion_project(
    template_dir: Path, tmp_path_factory: pytest.TempPathFactory, mirror: Path
) -> Iterator[tuple[Settings, LocalStore, list[str]]]:
    """A rendered fashion project after `cdl data pipeline` on the generated mirror."""
    root = render(
        template_dir,
        tmp_path_factory.mktemp("fashion") / "p",
        {"starter": "fashion", "project_name": "Fashion test"},
    )
    with pytest.MonkeyPatch.context() as patch:
        for name in ("CDL_PROFILE", "CDL_CONFIG"):
            patch.delenv(name, raising=False)
        patch.setenv("CDL_DATA_MIRROR", str(mirror))
        settings = load_settings(root / "cdl.yaml")
        store = LocalStore(settings.state_dir / "data")
        lines: list[str] = []
        pipeline.run_all(settings, store, lines.append)
        yield settings, store, lines


def fresh_settings(render_project, monkeypatch: pytest.MonkeyPatch, mirror: str) -> Settings:
    monkeypatch.delenv("CDL_PROFILE", raising=False)
    monkeypatch.setenv("CDL_DATA_MIRROR", mirror)
    root = render_project(starter="fashion")
    return load_settings(root / "cdl.yaml")


def test_rendered_config_selects_the_idx_format(fashion_project) -> None:
    settings, _, _ = fashion_project
    data = settings.config.data
    assert data.format == "idx"
    assert data.source == "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    assert settings.config.model.classes == FASHION_CLASSES
    assert [class_slug(name) for name in FASHION_CLASSES] == SLUGS


def test_pipeline_keeps_the_official_split(fashion_project, mirror: Path) -> None:
    settings, store, lines = fashion_project
    raw = store.resolve("fashion-test-raw", "master")
    assert store.list_files(raw.repo, raw.id) == sorted(canonical_names())
    assert any("keeps the source's train/test split" in line for line in lines)
    originals = {
        split: idx.read_pair(mirror / FILES[split]["images"], mirror / FILES[split]["labels"])
        for split in ("train", "test")
    }
    for split, count in (("train", N_TRAIN), ("test", N_TEST)):
        commit = store.resolve(f"fashion-test-{split}", "master")
        assert commit.provenance.inputs == (raw.ref,)
        paths = store.list_files(commit.repo, commit.id)
        assert len(paths) == count
        assert all(re.fullmatch(r"[a-z0-9-]+/\d{5}\.png", path) for path in paths)
        assert {path.split("/")[0] for path in paths} == set(SLUGS)
        pair = originals[split]
        for index in (0, 7, count - 1):
            path = f"{SLUGS[pair.labels[index]]}/{index:05d}.png"
            with Image.open(io.BytesIO(store.read(commit.repo, commit.id, path))) as image:
                assert np.array_equal(np.asarray(image), pair.images[index])
        summary = pipeline.validation_summary(settings, store, split)
        assert (summary["total"], summary["kept"], summary["discarded"]) == (count, count, 0)


def test_labels_come_from_the_idx_label_files(fashion_project, mirror: Path) -> None:
    settings, store, _ = fashion_project
    labels = idx.read_labels(mirror / FILES["train"]["labels"])
    train = load_split(settings, "train", store=store)
    assert len(train.items) == N_TRAIN and not train.unlabeled and not train.unknown_labels
    assert train.classes == FASHION_CLASSES
    for path, label, _content in train.items:
        assert label == FASHION_CLASSES[labels[int(path.rsplit("/", 1)[1][:5])]]
    assert "T-shirt/top" in {label for _, label, _ in train.items}
    table = LabelStore.open(settings)
    try:
        rows = table.rows("test")
    finally:
        table.close()
    assert len(rows) == N_TEST
    assert {row.labeler for row in rows} == {IDX_LABELER}
    assert {row.data_repo for row in rows} == {"fashion-test-test-validate"}


def test_collect_and_split_again_change_nothing(fashion_project) -> None:
    settings, store, _ = fashion_project
    heads = {repo: store.list_branches(repo) for repo in store.list_repos()}
    pipeline.collect(settings, store, lambda _: None)
    pipeline.split(settings, store, lambda _: None)
    assert {repo: store.list_branches(repo) for repo in store.list_repos()} == heads


def test_uncompressed_mirror_by_file_url(render_project, monkeypatch, tmp_path: Path) -> None:
    plain = write_mirror(tmp_path / "plain", 20, 10, compress=False)
    settings = fresh_settings(render_project, monkeypatch, plain.as_uri())
    store = LocalStore(settings.state_dir / "data")
    commit = IdxFormat(settings).collect(store).commit
    assert store.list_files(commit.repo, commit.id) == sorted(
        name.removesuffix(".gz") for name in canonical_names()
    )
    commits = IdxFormat(settings).split(store).commits
    assert (commits["train"].file_count, commits["test"].file_count) == (20, 10)


def test_downloads_from_the_base_url(render_project, monkeypatch, tmp_path: Path) -> None:
    served = write_mirror(tmp_path / "site", 20, 10)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = fresh_settings(render_project, monkeypatch, "")
        monkeypatch.delenv("CDL_DATA_MIRROR")
        config = settings.root / "cdl.yaml"
        url = f"http://127.0.0.1:{server.server_address[1]}/data"
        text = re.sub(r"(?m)^  source: .*$", f"  source: {url!r}", config.read_text())
        config.write_text(text)
        settings = load_settings(config)
        (served / "data").mkdir()
        for path in served.glob("*.gz"):
            path.rename(served / "data" / path.name)
        commit = IdxFormat(settings).collect(LocalStore(settings.state_dir / "data")).commit
    finally:
        server.shutdown()
        server.server_close()
    assert commit.file_count == 4
    assert len(list((settings.state_dir / "downloads").glob("*-idx*-ubyte.gz"))) == 4


def test_missing_and_damaged_files_are_rejected_before_any_commit(
    render_project, monkeypatch, tmp_path: Path
) -> None:
    folder = write_mirror(tmp_path / "m", 20, 10)
    settings = fresh_settings(render_project, monkeypatch, str(folder))
    store = LocalStore(settings.state_dir / "data")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"missing t10k-labels-idx1-ubyte\.gz"):
        IdxFormat(settings).collect(store)
    write_mirror(folder, 20, 10)
    images = folder / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-200])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: truncated gzip stream"):
        IdxFormat(settings).collect(store)
    write_mirror(folder, 20, 10)
    idx.write(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(11, dtype=np.uint8), "labels")
    with pytest.raises(DataError, match=r"holds 10 images but .* holds 11 labels"):
        IdxFormat(settings).collect(store)
    assert "fashion-test-raw" not in store.list_repos() and store.list_repos() == []


def test_wrong_image_size_and_unknown_label_values(
    render_project, monkeypatch, tmp_path: Path
) -> None:
    folder = write_mirror(tmp_path / "m", 20, 10)
    settings = fresh_settings(render_project, monkeypatch, str(folder))
    store = LocalStore(settings.state_dir / "data")
    idx.write(folder / "t10k-images-idx3-ubyte.gz", np.zeros((10, 32, 32), np.uint8), "images")
    with pytest.raises(DataError, match="images are 32x32 pixels, expected 28x28"):
        IdxFormat(settings).collect(store)
    write_mirror(folder, 20, 10)
    idx.write(folder / "train-labels-idx1-ubyte.gz", np.full(20, 12, np.uint8), "labels")
    IdxFormat(settings).collect(store)
    with pytest.raises(
        DataError,
        match=r"label value 12 \(item 0\) has no class: model.classes "
        r"names 10 classes",
    ):
        IdxFormat(settings).split(store)
