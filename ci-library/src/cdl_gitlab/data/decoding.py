"""Text decoding of collected items: the encoding is detected, never guessed by replacement.

Order: a byte-order mark (UTF-8, UTF-16, UTF-32) decides; else strict UTF-8; else UTF-16
without a BOM when NUL bytes sit on one side of every code unit; else charset-normalizer
(:func:`charset_normalizer.from_bytes`) proposes encodings. Among its proposals with the least
"chaos" (within 0.05) and a language coherence within 0.1 of the best, Windows-1252, then
Latin-1, then other Windows code pages, then ISO-8859 ones are preferred: on mostly-ASCII text
with one accented byte the detector's first proposal is arbitrary (an English Latin-1 article
with one ``£`` comes back as ``cp932``; Russian Windows-1251 text as ``mac_cyrillic``).
Text with no workable proposal is undecodable, and reported so.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

import charset_normalizer

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf_32"),
    (codecs.BOM_UTF32_BE, "utf_32"),
    (codecs.BOM_UTF8, "utf_8_sig"),
    (codecs.BOM_UTF16_LE, "utf_16"),
    (codecs.BOM_UTF16_BE, "utf_16"),
)
_PREFERRED = ("cp1252", "latin_1")
_CHAOS_SLACK = 0.05
_COHERENCE_SLACK = 0.1


@dataclass(frozen=True)
class Decoded:
    """The text and the encoding it was read with; ``text`` is None when undecodable."""

    text: str | None
    encoding: str = ""
    detail: str = ""


def _bom(data: bytes) -> Decoded | None:
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return Decoded(data.decode(codec), codec)
            except UnicodeDecodeError as exc:
                return Decoded(None, codec, f"starts with a {codec} BOM but {exc.reason}")
    return None


def _utf16_without_bom(data: bytes) -> Decoded | None:
    """UTF-16 whose NUL bytes are the high bytes of (mostly ASCII) code units."""
    if len(data) < 4 or len(data) % 2:
        return None
    for codec, high in (("utf_16_le", data[1::2]), ("utf_16_be", data[0::2])):
        if high.count(0) >= 0.9 * len(high):
            try:
                return Decoded(data.decode(codec), codec)
            except UnicodeDecodeError:
                return None
    return None


def _rank(encoding: str) -> int:
    """Lower is likelier for today's text: Windows-1252, Latin-1, other Windows pages, ISO."""
    if encoding in _PREFERRED:
        return _PREFERRED.index(encoding)
    if encoding.startswith("cp125"):
        return 2
    return 3 if encoding.startswith("iso8859") else 4


def _detected(data: bytes) -> Decoded:
    matches = list(charset_normalizer.from_bytes(data))
    if not matches:
        return Decoded(None, detail="no encoding reads it (charset-normalizer)")
    coherent = [m for m in matches if m.coherence > 0] or matches
    least = min(m.chaos for m in coherent)
    near = [m for m in coherent if m.chaos <= least + _CHAOS_SLACK]
    top = max(m.coherence for m in near)
    # a match stands for every encoding that reads the bytes as the same text
    candidates = [
        (_rank(name), -match.coherence, name)
        for match in near
        if match.coherence >= top - _COHERENCE_SLACK
        for name in match.could_be_from_charset
    ]
    encoding = min(candidates)[2]
    try:
        return Decoded(data.decode(encoding), encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        return Decoded(None, encoding, f"detected {encoding} but {exc}")


def decode_text(data: bytes) -> Decoded:
    """Decode ``data`` (see the module docstring); the BOM, if any, is not part of the text."""
    found = _bom(data)
    if found is not None:
        return found
    try:
        return Decoded(data.decode("utf-8"), "utf_8")
    except UnicodeDecodeError:
        pass
    if b"\x00" in data:
        return _utf16_without_bom(data) or Decoded(None, detail="contains NUL bytes")
    return _detected(data)
