"""Pinned downloads from a real HTTP server on 127.0.0.1: hash checked, resumed, capped."""

from __future__ import annotations

import hashlib
import http.server
import random
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from data_helpers import CLASSES, article, create_project

from cdl_gitlab.config import Settings, load_settings
from cdl_gitlab.data.errors import DataError
from cdl_gitlab.data.sources import download
from cdl_gitlab.data.steps import pipeline
from cdl_gitlab.data.stores.local_store import LocalStore


@dataclass
class Served:
    """What the server sends, what it saw, and whether to cut the next response short."""

    body: bytes = b""
    cut_next: bool = False
    ranges: list[str] = field(default_factory=list)
    url: str = ""


def _handler(served: Served) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if not self.path.endswith("/bbc.zip"):
                self.send_error(404)
                return
            header = self.headers.get("Range", "")
            served.ranges.append(header)
            start = int(header.removeprefix("bytes=").rstrip("-")) if header else 0
            body = served.body[start:]
            self.send_response(206 if header else 200)
            self.send_header("Content-Length", str(len(body)))
            if header:
                self.send_header(
                    "Content-Range", f"bytes {start}-{len(served.body) - 1}/{len(served.body)}"
                )
            self.end_headers()
            if served.cut_next:  # send half, then drop the connection
                served.cut_next = False
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.connection.close()
                return
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    archive = tmp_path / "bbc.zip"
    rng = random.Random(8)
    with zipfile.ZipFile(archive, "w") as handle:
        for label in CLASSES:
            for index in range(12):
                handle.writestr(f"bbc/{label}/{index:03d}.txt", article(rng, label, words=400))
    state = Served(body=archive.read_bytes())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/data/bbc.zip"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _project(tmp_path: Path, source: str, sha256: str) -> Settings:
    settings = create_project(tmp_path / "project", source=source, render=False)
    config = settings.root / "cdl.yaml"
    text = config.read_text(encoding="utf-8")
    text = text.replace(
        f'  source: "{source}"\n', f'  source: "{source}"\n  source_sha256: "{sha256}"\n'
    )
    config.write_text(text, encoding="utf-8")
    return load_settings(config, "local")


def test_pinned_download_is_collected(tmp_path: Path, served: Served) -> None:
    settings = _project(tmp_path, served.url, hashlib.sha256(served.body).hexdigest())
    store = LocalStore(settings.state_dir / "data")
    result = pipeline.collect(settings, store)
    assert result.commit.file_count == 36
    assert pipeline.collect(settings, store).commit.id == result.commit.id  # cached, verified
    assert len(served.ranges) == 1


def test_hash_mismatch_commits_nothing(tmp_path: Path, served: Served) -> None:
    settings = _project(tmp_path, served.url, "0" * 64)
    store = LocalStore(settings.state_dir / "data")
    with pytest.raises(DataError, match=r"SHA-256 mismatch: expected 0{64}") as caught:
        pipeline.collect(settings, store)
    assert hashlib.sha256(served.body).hexdigest() in str(caught.value)
    assert "nothing was collected" in str(caught.value)
    assert store.list_repos() == []
    assert list((settings.state_dir / "downloads").iterdir()) == []  # no file kept


def test_mirror_file_is_checked_against_the_same_hash(
    tmp_path: Path, served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = tmp_path / "mirror.zip"
    mirror.write_bytes(served.body[:-1] + b"x")  # a corrupted copy
    settings = _project(tmp_path, served.url, hashlib.sha256(served.body).hexdigest())
    monkeypatch.setenv("CDL_DATA_MIRROR", str(mirror))
    store = LocalStore(settings.state_dir / "data")
    with pytest.raises(DataError, match=r"data mirror .*mirror.zip: SHA-256 mismatch"):
        pipeline.collect(settings, store)
    assert store.list_repos() == []
    mirror.write_bytes(served.body)
    assert pipeline.collect(settings, store).commit.file_count == 36
    assert served.ranges == []  # the mirror was used, nothing downloaded


def test_an_interrupted_download_resumes(tmp_path: Path, served: Served) -> None:
    served.cut_next = True
    sha = hashlib.sha256(served.body).hexdigest()
    path = download(served.url, tmp_path / "cache", sha256=sha, backoff=0.01)
    assert path.read_bytes() == served.body
    assert served.ranges[0] == ""
    assert served.ranges[1] == f"bytes={len(served.body) // 2}-"  # resumed, not restarted


def test_size_cap_and_missing_file(tmp_path: Path, served: Served) -> None:
    with pytest.raises(DataError, match="download limit of 1000 bytes"):
        download(served.url, tmp_path / "cache", max_bytes=1000)
    assert list((tmp_path / "cache").iterdir()) == []
    with pytest.raises(DataError, match="HTTP 404"):
        download(served.url.replace("bbc.zip", "other.zip"), tmp_path / "cache", backoff=0.01)
    assert served.ranges == [""]  # a 404 is not retried (and was not counted: not bbc.zip)


def test_a_mirror_of_other_data_names_its_own_hash(
    tmp_path: Path, served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as handle:
        for label in CLASSES:
            handle.writestr(f"{label}/1.txt", article(random.Random(1), label))
    settings = _project(tmp_path, served.url, hashlib.sha256(served.body).hexdigest())
    store = LocalStore(settings.state_dir / "data")
    monkeypatch.setenv("CDL_DATA_MIRROR", str(other))
    with pytest.raises(DataError, match=r"SHA-256 mismatch.*CDL_DATA_SHA256"):
        pipeline.collect(settings, store)
    monkeypatch.setenv("CDL_DATA_SHA256", hashlib.sha256(other.read_bytes()).hexdigest())
    assert pipeline.collect(settings, store).commit.file_count == 3
