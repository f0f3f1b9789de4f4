"""Pachyderm pipeline specs: loading, a strict linter and the spec hash.

pachyderm-sdk's ``from_dict`` silently drops unknown keys, so the linter walks the spec and
checks every key against the fields of the SDK's betterproto messages (starting at
``pps.CreatePipelineRequest``), every value against the field's type, and the parts a
pipeline cannot run without. Keys may use the proto names (``parallelism_spec``) or their
JSON camelCase (``parallelismSpec``).

Image convention: ``transform.image`` is ``<prefix>/data:${CDL_IMAGE_TAG}``; ``cdl data
deploy`` substitutes ``$VAR`` / ``${VAR}`` from the environment (CI sets ``CDL_IMAGE_TAG`` to
the commit SHA it built), and the local runner ignores the image.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import hashlib
import json
import re
import typing
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from cdl_gitlab.data.errors import SpecError

SPEC_SUFFIXES = (".json", ".yaml", ".yml")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
_DURATION_RE = re.compile(r"^-?\d+(\.\d+)?s$")
_VAR_RE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_INT_TYPES = {
    "int32",
    "int64",
    "uint32",
    "uint64",
    "sint32",
    "sint64",
    "fixed32",
    "fixed64",
    "sfixed32",
    "sfixed64",
}


def _camel(name: str) -> str:
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(part.capitalize() for part in rest)


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    proto_type: str
    hint: Any
    group: str | None
    map_types: tuple[str, str] | None
    wraps: str | None


@cache
def _fields(message_cls: type) -> dict[str, _Field]:
    """Accepted JSON keys of a betterproto message -> field description."""
    hints = typing.get_type_hints(message_cls)
    accepted: dict[str, _Field] = {}
    for field in dataclasses.fields(message_cls):
        meta = field.metadata.get("betterproto")
        if meta is None:
            continue
        info = _Field(
            field.name, meta.proto_type, hints[field.name], meta.group, meta.map_types, meta.wraps
        )
        for key in {field.name, field.name.rstrip("_"), _camel(field.name)}:
            accepted[key] = info
    return accepted


def _type_name(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


class _Linter:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path or '(top level)'}: {message}")

    def message(self, cls: type, value: Any, path: str) -> None:
        if not isinstance(value, Mapping):
            self.error(path, f"expected an object, got {_type_name(value)}")
            return
        fields = _fields(cls)
        groups: dict[str, list[str]] = {}
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            field = fields.get(key) if isinstance(key, str) else None
            if field is None:
                close = difflib.get_close_matches(str(key), sorted(fields), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                self.error(where, f"unknown field{hint}")
                continue
            if field.group and item is not None:
                groups.setdefault(field.group, []).append(str(key))
            self.field(field, item, where)
        for names in groups.values():
            if len(names) > 1:
                self.error(path, f"{' and '.join(names)} are alternatives: set only one")

    def field(self, field: _Field, value: Any, path: str) -> None:
        if value is None:
            return
        origin = typing.get_origin(field.hint)
        if field.map_types is not None:
            if not isinstance(value, Mapping):
                self.error(path, f"expected an object (map), got {_type_name(value)}")
                return
            value_field = dataclasses.replace(field, map_types=None, proto_type=field.map_types[1])
            for key, item in value.items():
                self.scalar(value_field, item, f"{path}.{key}")
            return
        if origin in (list, typing.List):  # noqa: UP006
            if not isinstance(value, list):
                self.error(path, f"expected a list, got {_type_name(value)}")
                return
            (element,) = typing.get_args(field.hint)
            element_field = dataclasses.replace(field, hint=element)
            for index, item in enumerate(value):
                self.scalar(element_field, item, f"{path}[{index}]")
            return
        self.scalar(field, value, path)

    def scalar(self, field: _Field, value: Any, path: str) -> None:
        kind = field.proto_type
        hint = field.hint
        if field.wraps:
            kind = field.wraps
        if kind == "message":
            if hint is dt.timedelta:
                if not (isinstance(value, str) and _DURATION_RE.match(value)):
                    self.error(path, f'expected a duration like "60s", got {value!r}')
            elif hint is dt.datetime:
                if not isinstance(value, str):
                    self.error(path, f"expected an RFC 3339 time string, got {_type_name(value)}")
            elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
                self.message(hint, value, path)
            return
        if kind == "string":
            ok = isinstance(value, str)
            expected = "a string"
        elif kind == "bool":
            ok = isinstance(value, bool)
            expected = "true or false"
        elif kind in _INT_TYPES:
            ok = (isinstance(value, int) and not isinstance(value, bool)) or (
                isinstance(value, str) and re.fullmatch(r"-?\d+", value) is not None
            )
            expected = "an integer"
        elif kind in ("float", "double"):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            expected = "a number"
        elif kind == "enum":
            names = [member.name for member in hint] if isinstance(hint, type) else []
            ok = value in names or (isinstance(value, int) and not isinstance(value, bool))
            expected = f"one of {', '.join(names)}"
        elif kind == "bytes":
            ok = isinstance(value, str)
            expected = "a base64 string"
        else:
            return
        if not ok:
            self.error(path, f"expected {expected}, got {_type_name(value)} {value!r}")


def _require(linter: _Linter, spec: Mapping[str, Any]) -> None:
    pipeline = spec.get("pipeline")
    name = pipeline.get("name") if isinstance(pipeline, Mapping) else None
    if not name:
        linter.error("pipeline.name", "required: the pipeline (and output repo) name")
    elif isinstance(name, str) and not _NAME_RE.match(name):
        linter.error("pipeline.name", f"invalid name {name!r}: letters, digits, '-', '_'")
    if spec.get("spout") is None and spec.get("service") is None and spec.get("input") is None:
        linter.error("input", "required: the pipeline's input (pfs, cross, union, ...)")
    transform = spec.get("transform")
    if transform is None:
        linter.error("transform", "required: the image and cmd the pipeline runs")
    elif isinstance(transform, Mapping):
        if not transform.get("image"):
            linter.error("transform.image", "required: the container image of the step")
        if not transform.get("cmd"):
            linter.error("transform.cmd", "required: the command the step runs")
    if isinstance(spec.get("input"), Mapping):
        _require_input(linter, spec["input"], "input")


def _require_input(linter: _Linter, node: Mapping[str, Any], path: str) -> None:
    kinds = [k for k in ("pfs", "cross", "union", "join", "group", "cron") if node.get(k)]
    if not kinds:
        linter.error(path, "needs one of pfs, cross, union, join, group, cron")
        return
    if len(kinds) > 1:
        linter.error(path, f"{' and '.join(kinds)} are alternatives: set only one")
    pfs = node.get("pfs")
    if isinstance(pfs, Mapping):
        for key in ("repo", "glob"):
            if not pfs.get(key):
                linter.error(f"{path}.pfs.{key}", "required")
    for kind in ("cross", "union", "join", "group"):
        children = node.get(kind)
        if isinstance(children, list):
            for index, child in enumerate(children):
                if isinstance(child, Mapping):
                    _require_input(linter, child, f"{path}.{kind}[{index}]")


def lint_spec(spec: Any) -> list[str]:
    """Every problem of one pipeline spec as ``<json path>: <message>``; empty if valid."""
    from pachyderm_sdk.api import pps

    linter = _Linter()
    linter.message(pps.CreatePipelineRequest, spec, "")
    if isinstance(spec, Mapping):
        _require(linter, spec)
        if not linter.errors:
            try:
                pps.CreatePipelineRequest().from_dict(dict(spec))
            except Exception as exc:  # the SDK's own parser has the last word
                linter.error("", f"pachyderm-sdk cannot parse the spec: {exc}")
    return linter.errors


def load_spec_file(path: Path) -> dict[str, Any]:
    """Read a JSON or YAML pipeline spec."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected one pipeline spec (an object) at the top level")
    return data


def spec_files(paths: list[Path]) -> list[Path]:
    """The spec files named by ``paths`` (files, or folders searched for *.json/*.yaml)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix in SPEC_SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            raise SpecError(f"{path}: no such file or folder")
    return found


def lint_files(paths: list[Path]) -> tuple[int, list[str]]:
    """Lint every spec file; returns (number of files, problems prefixed with the file)."""
    files = spec_files(paths)
    problems: list[str] = []
    names: dict[str, Path] = {}
    for path in files:
        try:
            spec = load_spec_file(path)
        except SpecError as exc:
            problems.append(str(exc))
            continue
        problems.extend(f"{path}: {problem}" for problem in lint_spec(spec))
        pipeline = spec.get("pipeline")
        name = pipeline.get("name") if isinstance(pipeline, dict) else None
        if isinstance(name, str):
            if name in names:
                problems.append(f"{path}: pipeline.name: {name!r} is also defined in {names[name]}")
            names[name] = path
    return len(files), problems


def spec_hash(spec: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a spec (key order and whitespace do not matter)."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def expand_image(image: str, env: Mapping[str, str]) -> str:
    """Substitute ``$VAR``/``${VAR}`` in an image reference; every variable must be set."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        value = env.get(name)
        if not value:
            raise SpecError(
                f"image {image!r} needs the environment variable {name} "
                "(CI sets CDL_IMAGE_TAG to the commit SHA of the image it built)"
            )
        return value

    return _VAR_RE.sub(substitute, image)
