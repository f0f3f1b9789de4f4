"""Names of a project's data repos (``data.repo_prefix = P``).

``P-raw`` (collected), ``P-train`` / ``P-test`` (split), ``P-<split>-validate`` (the validate
pipelines' outputs), ``P-<split>-labels`` (Label Studio exports the store-labels pipelines read).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from cdl_gitlab.data.errors import DataError

if TYPE_CHECKING:
    from cdl_gitlab.config import Settings

Split = Literal["train", "test"]
SPLITS: tuple[Split, ...] = ("train", "test")


def check_split(split: str) -> Split:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} (use train or test)")
    return split  # type: ignore[return-value]


def raw_repo(settings: Settings) -> str:
    return f"{settings.config.data.repo_prefix}-raw"


def split_repo(settings: Settings, split: str) -> str:
    return f"{settings.config.data.repo_prefix}-{check_split(split)}"


def validated_repo(settings: Settings, split: str) -> str:
    return f"{split_repo(settings, split)}-validate"


def labels_repo(settings: Settings, split: str) -> str:
    return f"{split_repo(settings, split)}-labels"
