"""Value types shared by the data stores: commits, provenance, data versions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CommitRef:
    """One commit of one repo: ``repo@commit``."""

    repo: str
    commit: str

    def __str__(self) -> str:
        return f"{self.repo}@{self.commit}"

    @classmethod
    def parse(cls, text: str) -> CommitRef:
        repo, _, commit = text.partition("@")
        return cls(repo, commit)


@dataclass(frozen=True)
class Provenance:
    """What produced a commit: the input commits and the hash of the spec that ran."""

    inputs: tuple[CommitRef, ...] = ()
    spec_hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": [str(ref) for ref in self.inputs], "spec_hash": self.spec_hash}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Provenance:
        data = data or {}
        inputs = tuple(CommitRef.parse(text) for text in data.get("inputs", []))
        return cls(inputs=inputs, spec_hash=str(data.get("spec_hash", "")))

    def __bool__(self) -> bool:
        return bool(self.inputs or self.spec_hash)


@dataclass(frozen=True)
class Commit:
    """A finished commit: an immutable snapshot of a repo's files."""

    repo: str
    id: str
    branch: str
    parent: str | None = None
    message: str = ""
    created: str = ""
    provenance: Provenance = field(default_factory=Provenance)
    file_count: int = 0
    size_bytes: int = 0

    @property
    def ref(self) -> CommitRef:
        return CommitRef(self.repo, self.id)


@dataclass(frozen=True)
class DataVersion:
    """Where a data set came from: repo, branch and commit."""

    repo: str
    branch: str
    commit: str

    def __str__(self) -> str:
        return f"{self.repo}@{self.branch}={self.commit}"

    @classmethod
    def of(cls, commit: Commit) -> DataVersion:
        return cls(commit.repo, commit.branch, commit.id)
