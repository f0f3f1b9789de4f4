"""Decoding: latin-1, cp1252, UTF-16 and BOMs read correctly; only the undecodable discarded."""

from __future__ import annotations

import codecs
import logging
import os
import zipfile
from pathlib import Path

import pytest

from cdl_gitlab.data.decoding import decode_text
from cdl_gitlab.data.steps.validate import Rules, check_item, validate_tree

REPO = Path(__file__).resolve().parents[2]
REAL_ARCHIVE = Path(
    os.environ.get("CDL_BBC_ARCHIVE") or REPO.parent / "shared" / "datasets" / "bbc-fulltext.zip"
)
RULES = Rules(task="text", min_chars=20, max_bytes=100_000, extensions=("txt",))

PRICE = (
    "Ticket prices rose to \u00a3300 for the final, the club said on Monday, "
    "and the caf\u00e9 owners were not pleased with the decision.\n"
)
QUOTES = "The coach said \u201cwe play \u2013 and we win\u201d, a \u20ac5 bet.\n" * 3


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (PRICE.encode("latin-1"), "cp1252"),  # a latin-1 file reads the same as cp1252
        (QUOTES.encode("cp1252"), "cp1252"),
        (PRICE.encode("utf-8"), "utf_8"),
        (codecs.BOM_UTF8 + PRICE.encode("utf-8"), "utf_8_sig"),
        (PRICE.encode("utf-16"), "utf_16"),  # with a BOM
        (codecs.BOM_UTF16_BE + QUOTES.encode("utf-16-be"), "utf_16"),
        (PRICE.encode("utf-16-le"), "utf_16_le"),  # no BOM
        (PRICE.encode("utf-32"), "utf_32"),
    ],
)
def test_encodings_are_detected(data: bytes, encoding: str) -> None:
    decoded = decode_text(data)
    assert decoded.encoding == encoding
    expected = QUOTES if "coach" in decoded.text else PRICE  # type: ignore[operator]
    assert decoded.text == expected
    verdict = check_item("sport/1.txt", data, RULES)
    assert verdict.content == expected.encode("utf-8")
    assert verdict.repaired == ("" if encoding == "utf_8" else f"reencoded: {encoding} -> utf-8")


def test_cyrillic_is_not_read_as_western() -> None:
    text = "Министр сказал в среду, что все довольны этим решением правительства.\n"
    decoded = decode_text(text.encode("cp1251"))
    assert decoded.text == text


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00\x01PK\x03\x04" + bytes(range(256)) * 4, "binary"),
        (codecs.BOM_UTF8 + b"caf\xe9 " * 10, "undecodable"),  # a UTF-8 BOM, then not UTF-8
        (b"\x00" * 64, "binary"),
    ],
)
def test_undecodable_is_discarded_with_a_reason(data: bytes, reason: str) -> None:
    verdict = check_item("sport/1.txt", data, RULES)
    assert verdict.content is None
    assert (verdict.reason, bool(verdict.detail)) == (reason, True)


def test_detected_encoding_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "in" / "sport").mkdir(parents=True)
    (tmp_path / "in" / "sport" / "1.txt").write_bytes(PRICE.encode("latin-1"))
    with caplog.at_level(logging.INFO, logger="cdl_gitlab.data.steps.validate"):
        summary = validate_tree(tmp_path / "in", tmp_path / "out", RULES)
    assert summary.kept == 1
    assert "repaired sport/1.txt: reencoded: cp1252 -> utf-8" in caplog.text
    assert "\u00a3300" in (tmp_path / "out" / "sport" / "1.txt").read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.skipif(not REAL_ARCHIVE.is_file(), reason=f"{REAL_ARCHIVE} not present")
def test_real_bbc_archive_keeps_the_pound_sign(tmp_path: Path) -> None:
    with zipfile.ZipFile(REAL_ARCHIVE) as archive:
        data = archive.read("bbc/sport/199.txt")
        texts = [n for n in archive.namelist() if n.endswith(".txt")]
        undecodable = [n for n in texts if decode_text(archive.read(n)).text is None]
    assert b"\xa3" in data  # latin-1 pound sign
    decoded = decode_text(data)
    assert decoded.encoding == "cp1252"
    assert "\u00a315.8m" in decoded.text and "\ufffd" not in decoded.text  # type: ignore[operator]
    assert undecodable == []
