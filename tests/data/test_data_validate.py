"""Cleaning and validation: every bad item discarded with its reason, nothing crashes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from data_helpers import make_corpus
from hypothesis import given, settings
from hypothesis import strategies as st

from cdl_gitlab.data.steps.validate import Rules, check_item, validate_tree

RULES = Rules(task="text", min_chars=40, max_bytes=4000, extensions=("txt",))


def test_corpus_counts_and_reasons(tmp_path: Path) -> None:
    expected = make_corpus(tmp_path / "in", per_class=5)
    summary = validate_tree(tmp_path / "in", tmp_path / "out", RULES)
    bad = {path: reason for path, reason in expected.items() if reason}
    assert summary.total == len(expected)
    assert summary.kept == len(expected) - len(bad)
    assert {d["path"]: d["reason"] for d in summary.discarded_items} == bad
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written["reasons"] == {
        "binary": 1,
        "empty": 2,
        "extension": 1,
        "outside_class_folder": 1,
        "oversized": 1,
        "too_short": 1,
    }
    assert written["repaired"] == {"reencoded": 1}
    assert written["classes"] == {"business": 5, "sport": 5, "tech": 6}
    repaired = (tmp_path / "out" / "tech" / "906.txt").read_text(encoding="utf-8")
    assert repaired.startswith("Caf\u00e9 r\u00e9sum\u00e9 na\u00efve")  # latin-1, decoded
    assert written["repaired_items"] == [
        {"path": "tech/906.txt", "repair": "reencoded: cp1252 -> utf-8"}
    ]
    assert not (tmp_path / "out" / "business" / "900.txt").exists()


def test_control_characters_count_as_binary() -> None:
    data = ("text " * 20).encode() + b"\x01\x02\x03" * 40
    assert check_item("a/b.txt", data, RULES).reason == "binary"


def test_utf8_bom_is_dropped() -> None:
    verdict = check_item("a/b.txt", "\ufeff".encode() + b"x" * 50, RULES)
    assert verdict.content == b"x" * 50


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    verdict = check_item("c/f.txt", data, Rules(min_chars=5, max_bytes=500))
    if verdict.content is not None:
        verdict.content.decode("utf-8")  # whatever is kept is valid UTF-8
    else:
        assert verdict.reason


def _png(size: tuple[int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", size, color=128).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_png((28, 28)), ""),
        (_png((32, 28)), "wrong_size"),
        (_png((28, 28))[:60], "undecodable_image"),
        (b"not an image at all", "undecodable_image"),
        (b"", "empty"),
    ],
)
def test_images(data: bytes, reason: str) -> None:
    rules = Rules(task="image", max_bytes=100_000, extensions=("png",), image_size=(28, 28))
    assert check_item("Bag/1.png", data, rules).reason == reason
