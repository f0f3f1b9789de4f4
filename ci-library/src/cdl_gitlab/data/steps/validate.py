"""Cleaning and validation of collected items: what the ``*-validate`` pipelines run.

Every input file under ``<input>/<class>/<file>`` is either kept (cleaned: text is decoded
from its detected encoding, :mod:`cdl_gitlab.data.decoding`, and written back as UTF-8; the
encoding of every non-UTF-8 item is logged and listed under ``repaired`` as ``reencoded``) or
discarded with a reason. Nothing raises on bad content: empty, oversized, binary or
undecodable files become counted, logged reasons in ``summary.json`` next to the kept files.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdl_gitlab.data.decoding import decode_text
from cdl_gitlab.data.errors import DataError

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
# control characters (C0 but tab, newlines, form feed; DEL; C1): a high share means binary
_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")

# A project hook: (relative path, cleaned content) -> a discard reason, or None to keep.
ExtraCheck = Callable[[str, bytes], "str | None"]


@dataclass(frozen=True)
class Rules:
    """What a valid item is; built from ``cdl.yaml``'s ``model.task`` and ``data.validation``."""

    task: str = "text"
    min_chars: int = 0
    max_bytes: int = 10_000_000
    extensions: tuple[str, ...] = ()
    max_control_ratio: float = 0.1
    image_size: tuple[int, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> Rules:
        validation = settings.config.data.validation
        return cls(
            task=settings.config.model.task,
            min_chars=validation.min_chars,
            max_bytes=validation.max_bytes,
            extensions=tuple(ext.lower().lstrip(".") for ext in validation.extensions),
            max_control_ratio=validation.max_control_ratio,
            image_size=tuple(validation.image_size),
        )


@dataclass
class Verdict:
    content: bytes | None
    reason: str = ""
    detail: str = ""
    repaired: str = ""


@dataclass
class Summary:
    total: int = 0
    kept: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    repairs: Counter[str] = field(default_factory=Counter)
    classes: Counter[str] = field(default_factory=Counter)
    discarded_items: list[dict[str, str]] = field(default_factory=list)
    repaired_items: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "kept": self.kept,
            "discarded": self.total - self.kept,
            "reasons": dict(sorted(self.reasons.items())),
            "repaired": dict(sorted(self.repairs.items())),
            "classes": dict(sorted(self.classes.items())),
            "discarded_items": self.discarded_items,
            "repaired_items": self.repaired_items,
        }

    def __str__(self) -> str:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.reasons.items())) or "none"
        return (
            f"validate: {self.total} items, kept {self.kept}, discarded "
            f"{self.total - self.kept} ({reasons})"
        )


def check_text(data: bytes, rules: Rules) -> Verdict:
    """Decode (:mod:`cdl_gitlab.data.decoding`), then keep the text as UTF-8 or discard it."""
    decoded = decode_text(data)
    if decoded.text is None:
        reason = "binary" if "NUL" in decoded.detail else "undecodable"
        return Verdict(None, reason, decoded.detail)
    text = decoded.text
    if "\x00" in text:
        return Verdict(None, "binary", "contains NUL bytes")
    controls = len(_CONTROL_RE.findall(text))
    if controls > rules.max_control_ratio * len(text):
        return Verdict(None, "binary", f"{controls / len(text):.0%} control characters")
    stripped = text.strip()
    if not stripped:
        return Verdict(None, "empty", "only whitespace")
    if len(stripped) < rules.min_chars:
        return Verdict(None, "too_short", f"{len(stripped)} characters < {rules.min_chars}")
    repaired = "" if decoded.encoding == "utf_8" else f"reencoded: {decoded.encoding} -> utf-8"
    return Verdict(text.encode("utf-8"), repaired=repaired)


def check_image(data: bytes, rules: Rules) -> Verdict:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            size = image.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        return Verdict(None, "undecodable_image", str(exc) or type(exc).__name__)
    if rules.image_size and tuple(size) != tuple(rules.image_size):
        expected = "x".join(map(str, rules.image_size))
        return Verdict(None, "wrong_size", f"{size[0]}x{size[1]}, expected {expected}")
    return Verdict(data)


def check_item(rel: str, data: bytes, rules: Rules, extra: ExtraCheck | None = None) -> Verdict:
    """Keep (with cleaned content) or discard one item; never raises on bad content."""
    if "/" not in rel:
        return Verdict(None, "outside_class_folder", "items live in <class>/<file>")
    if not data:
        return Verdict(None, "empty", "0 bytes")
    if len(data) > rules.max_bytes:
        return Verdict(None, "oversized", f"{len(data)} bytes > {rules.max_bytes}")
    extension = rel.rsplit(".", 1)[-1].lower() if "." in rel.rsplit("/", 1)[-1] else ""
    if rules.extensions and extension not in rules.extensions:
        allowed = list(rules.extensions)
        return Verdict(None, "extension", f".{extension or '(none)'} not in {allowed}")
    verdict = check_image(data, rules) if rules.task == "image" else check_text(data, rules)
    if verdict.content is not None and extra is not None:
        reason = extra(rel, verdict.content)
        if reason:
            return Verdict(None, reason, "project check")
    return verdict


def _read(path: str, max_bytes: int) -> bytes:
    """The file's content, or its first ``max_bytes + 1`` bytes when it is larger (enough to
    call it oversized). A small file is read at its own size: reading every file into a
    ``max_bytes`` buffer makes the allocator keep ~1 MB chunks that other objects then pin,
    so the process grew with the number of files."""
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size > max_bytes:
            return handle.read(max_bytes + 1)
        return handle.read()


def validate_tree(src: Path, out: Path, rules: Rules, extra: ExtraCheck | None = None) -> Summary:
    """Validate every file under ``src``; write kept ones to ``out`` and ``out/summary.json``."""
    summary = Summary()
    made: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, src).replace(os.sep, "/")
            summary.total += 1
            try:
                data = _read(full, rules.max_bytes)
            except OSError as exc:
                verdict = Verdict(None, "unreadable", exc.strerror or str(exc))
            else:
                verdict = check_item(rel, data, rules, extra)
            if verdict.content is None:
                summary.reasons[verdict.reason] += 1
                summary.discarded_items.append(
                    {"path": rel, "reason": verdict.reason, "detail": verdict.detail}
                )
                log.info("discarded %s: %s (%s)", rel, verdict.reason, verdict.detail)
                continue
            if verdict.repaired:
                kind = verdict.repaired.split(":", 1)[0]
                summary.repairs[kind] += 1
                summary.repaired_items.append({"path": rel, "repair": verdict.repaired})
                log.info("repaired %s: %s", rel, verdict.repaired)
            folder = rel.rsplit("/", 1)[0]
            if folder not in made:
                os.makedirs(os.path.join(out, folder), exist_ok=True)
                made.add(folder)
            with open(os.path.join(out, rel), "wb") as handle:
                handle.write(verdict.content)
            summary.kept += 1
            summary.classes[rel.split("/", 1)[0]] += 1
    # a plain write: the step's output only becomes visible when the runner commits it
    (out / SUMMARY_FILE).write_text(json.dumps(summary.to_dict(), indent=1) + "\n", "utf-8")
    return summary


def run_step(input_name: str = "data", extra: ExtraCheck | None = None) -> Summary:
    """The pipeline step: ``/pfs/<input_name>`` -> ``/pfs/out`` with the rules of cdl.yaml."""
    from cdl_gitlab.config import load_settings
    from cdl_gitlab.data.pachyderm.pfs import pfs_path

    settings = load_settings()
    src, out = pfs_path(input_name), pfs_path("out")
    if not src.is_dir():
        raise DataError(f"validate: input folder {src} does not exist")
    out.mkdir(parents=True, exist_ok=True)
    return validate_tree(src, out, Rules.from_settings(settings), extra)
