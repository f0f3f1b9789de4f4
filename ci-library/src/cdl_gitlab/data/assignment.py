"""Stable train/test assignment: an item's split is a pure function of its content and the seed.

Identity is the SHA-256 of the item's content, not its path: an arriving copy of a test item
(under any name in the same class) is the same identity, so it can never land in train, and
renaming a file does not move it. The score of an item is
``int(sha256(seed || "\\0" || digest)) / 2**256``, uniform in [0, 1); it goes to test when the
score is below ``data.split.test_ratio``.

Consequences:

- adding items never moves an existing item, removing items moves no other item: the split of
  every item depends on nothing but its own content and the seed;
- the test fraction is a binomial sample, per class as overall (the rule is not stratified by
  rank: stratifying by rank is exactly what moved items as data arrived): at 1,000 items and a
  ratio of 0.2 its standard deviation is 1.26 points, at 10,000 items 0.4 points;
- exact duplicates (same content) are one item: the first path (sorted) is kept; a content
  found under two different classes is ambiguous and dropped.

The rule is recorded in the split commits' provenance (``spec_hash`` starts with
:data:`RULE`), so a split made by an earlier rule (a seeded shuffle per class) is recognised
and re-split only on request (:func:`check_rule`).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cdl_gitlab.data.errors import DataError

if TYPE_CHECKING:
    from cdl_gitlab.data.commits import Commit

RULE = "content-sha256-v2"
"""The marker of this rule in the split commits' ``provenance.spec_hash``."""

_SCALE = float(2**256)


def score(digest: str, seed: int) -> float:
    """The item's position in [0, 1): a pure function of its content digest and the seed."""
    payload = f"{seed}\0".encode() + bytes.fromhex(digest)
    return int.from_bytes(hashlib.sha256(payload).digest(), "big") / _SCALE


def assign(digest: str, seed: int, test_ratio: float) -> str:
    """``"test"`` or ``"train"`` for the item whose content has SHA-256 ``digest``."""
    return "test" if score(digest, seed) < test_ratio else "train"


def spec_hash(seed: int, test_ratio: float) -> str:
    """What the split commits record as their spec: the rule and its parameters."""
    params = {"rule": RULE, "seed": seed, "test_ratio": test_ratio, "dedupe": "sha256"}
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
    return f"{RULE}:{digest}"


@dataclass
class SplitPlan:
    """Path -> content digest of each set, and the duplicates and conflicts removed."""

    train: dict[str, str] = field(default_factory=dict)
    test: dict[str, str] = field(default_factory=dict)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (dropped, kept)
    conflicts: list[str] = field(default_factory=list)


def place(digest: str, paths: Sequence[str], seed: int, test_ratio: float) -> str | None:
    """The set (``"train"`` / ``"test"``) of one content, found at the sorted ``paths``: the
    first path is kept, the others are duplicates; None when the paths lie in two classes
    (a conflict: every copy is dropped)."""
    if len({path.split("/", 1)[0] for path in paths}) > 1:
        return None
    return assign(digest, seed, test_ratio)


def plan_split(digests: Mapping[str, str], seed: int, test_ratio: float) -> SplitPlan:
    """Deduplicate ``<class>/<file>`` paths by content digest, then assign each item (in
    memory; :mod:`cdl_gitlab.data.split_tree` applies the same rule to a folder, streaming)."""
    plan = SplitPlan()
    by_digest: dict[str, list[str]] = defaultdict(list)
    for path in sorted(digests):
        by_digest[digests[path]].append(path)
    for digest, paths in by_digest.items():
        target = place(digest, paths, seed, test_ratio)
        if target is None:
            plan.conflicts.extend(paths)
            continue
        plan.duplicates.extend((dup, paths[0]) for dup in paths[1:])
        (plan.test if target == "test" else plan.train)[paths[0]] = digest
    return plan


def check_rule(previous: Commit | None, resplit: bool) -> None:
    """Refuse to replace a split made by an earlier rule unless ``resplit`` is set."""
    if previous is None or resplit or not previous.provenance.inputs:
        return
    if previous.provenance.spec_hash.startswith(f"{RULE}:"):
        return
    raise DataError(
        f"{previous.repo}@{previous.id[:12]} was split by an earlier rule (a seeded shuffle "
        "per class, which moves items between train and test as data arrives). The current "
        f"rule ({RULE}) assigns each item by its content hash, so items never move again; "
        "switching re-assigns some items once (a share 2·r·(1-r) on average, r the test "
        "ratio), and a model trained on the old split has seen some of the new test items. "
        "Run `cdl data split --resplit` (or `cdl data pipeline --resplit`) to switch, then "
        "retrain"
    )
