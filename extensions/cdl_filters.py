"""Jinja filters of the CDL template, loaded by Copier through copier-template-extensions.

- ``slugify``: a name as lowercase ASCII letters, digits and ``-``; accented letters are
  transliterated (``Prüfung Ünïcode`` -> ``prufung-unicode``), never dropped.
- ``with_absolute_source``: Copier's answers with a local template path made absolute.
  Copier records ``_src_path`` as typed, relative to where ``copier copy`` ran; the
  project's ``make setup`` and ``copier update`` run from the project instead.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment
from jinja2.ext import Extension

# Letters that Unicode does not decompose into an ASCII letter plus combining marks.
SPECIAL_LETTERS = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "œ": "oe",
        "ø": "o",
        "đ": "d",
        "ð": "d",
        "þ": "th",
        "ł": "l",
        "ı": "i",
        "ħ": "h",
        "ŧ": "t",
        "ŋ": "ng",
        "ſ": "s",
    }
)


def slugify(text: str, separator: str = "-") -> str:
    """``text`` as lowercase ASCII words joined by ``separator``."""
    letters = unicodedata.normalize("NFKD", str(text).lower().translate(SPECIAL_LETTERS))
    ascii_text = letters.encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", separator, ascii_text).strip(separator)


def with_absolute_source(answers: Mapping[str, Any]) -> dict[str, Any]:
    """``answers`` with ``_src_path`` made absolute when it names a local folder."""
    result = dict(answers)
    source = result.get("_src_path")
    if isinstance(source, str) and "://" not in source:
        path = Path(source).expanduser()
        if path.is_dir():
            result["_src_path"] = str(path.resolve())
    return result


class CdlFilters(Extension):
    """Registers the template's filters."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters["slugify"] = slugify
        environment.filters["with_absolute_source"] = with_absolute_source
