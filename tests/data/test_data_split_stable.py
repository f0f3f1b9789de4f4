"""Stable splits as data arrives: an item's split depends on its content and the seed only."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdl_gitlab.config import Settings
from cdl_gitlab.data.assignment import RULE, assign, plan_split
from cdl_gitlab.data.commits import Provenance
from cdl_gitlab.data.errors import DataError
from cdl_gitlab.data.steps.split import split
from cdl_gitlab.data.stores.local_store import LocalStore

CLASSES = ("business", "sport", "tech")


def _items(start: int, count: int, rng: random.Random) -> dict[str, bytes]:
    return {
        f"{rng.choice(CLASSES)}/{index:05d}.txt": f"article {index} {rng.random()}".encode()
        for index in range(start, start + count)
    }


def _splits(store: LocalStore) -> dict[str, str]:
    """Path -> split of every item of the current train and test commits."""
    return {
        path: name
        for name in ("train", "test")
        for path in store.list_files(f"demo-{name}", "master")
    }


def test_arrivals_and_removals_never_move_an_item(project: Settings, store: LocalStore) -> None:
    rng = random.Random(1)
    raw = _items(0, 900, rng)
    store.create_repo("demo-raw")
    store.put("demo-raw", "master", raw)
    split(project, store)
    before = _splits(store)
    assert len(before) == 900

    raw.update(_items(900, 300, rng))  # M = 300 arrive
    for path in rng.sample(sorted(raw), 200):  # K = 200 are removed
        del raw[path]
    store.put("demo-raw", "master", raw)
    split(project, store)
    after = _splits(store)
    assert set(after) == set(raw)
    moved = [path for path in after if path in before and before[path] != after[path]]
    assert moved == []
    assert len([path for path in after if path in before]) > 600


def test_a_copy_of_a_test_item_arrives_in_test(project: Settings, store: LocalStore) -> None:
    raw = _items(0, 200, random.Random(2))
    store.create_repo("demo-raw")
    store.put("demo-raw", "master", raw)
    split(project, store)
    train_before = store.list_files("demo-train", "master")
    test_items = store.list_files("demo-test", "master")
    copies = set()
    for path in test_items:  # a renamed copy that sorts first, so the copy is the one kept
        folder, name = path.split("/")
        raw[f"{folder}/-copy-{name}"] = raw[path]
        copies.add(f"{folder}/-copy-{name}")
    store.put("demo-raw", "master", raw)
    result = split(project, store)
    assert f"{len(test_items)} exact duplicates removed, 0 conflicting" in result.lines[0]
    assert store.list_files("demo-train", "master") == train_before
    assert set(store.list_files("demo-test", "master")) == copies


@pytest.mark.parametrize(("count", "ratio"), [(1_000, 0.2), (3_000, 0.25), (10_000, 0.2)])
def test_test_fraction_within_two_points(count: int, ratio: float) -> None:
    """Per class and overall, on 1,000 items per class and more (seeded, reproducible data)."""
    rng = random.Random(count)
    digests = {
        f"{label}/{i}.txt": hashlib.sha256(f"{label} {i} {rng.random()}".encode()).hexdigest()
        for label in CLASSES
        for i in range(count)
    }
    plan = plan_split(digests, seed=42, test_ratio=ratio)
    for label in CLASSES:
        n_test = sum(path.startswith(label + "/") for path in plan.test)
        assert abs(n_test / count - ratio) <= 0.02, (label, n_test / count)
    assert abs(len(plan.test) / len(digests) - ratio) <= 0.02


@settings(max_examples=60, deadline=None)
@given(
    st.sets(st.binary(min_size=1, max_size=24), min_size=1, max_size=300),
    st.integers(min_value=0, max_value=10_000),
    st.floats(min_value=0.05, max_value=0.5),
    st.data(),
)
def test_split_of_an_item_ignores_the_other_items(
    contents: set[bytes], seed: int, ratio: float, data: st.DataObject
) -> None:
    items = sorted(contents)
    digests = {f"c/{i}.txt": hashlib.sha256(c).hexdigest() for i, c in enumerate(items)}
    subset = data.draw(st.sets(st.sampled_from(sorted(digests))))
    whole = plan_split(digests, seed, ratio)
    part = plan_split({path: digests[path] for path in subset}, seed, ratio)
    assert set(part.test) == set(whole.test) & subset
    assert set(part.train) == set(whole.train) & subset


def test_fraction_is_binomial_around_the_ratio() -> None:
    """Many seeds: the mean test fraction is the ratio (no bias in the score)."""
    digests = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(2_000)]
    fractions = [
        sum(assign(d, seed, 0.2) == "test" for d in digests) / len(digests) for seed in range(20)
    ]
    assert abs(sum(fractions) / len(fractions) - 0.2) < 0.01
    assert len(set(fractions)) > 1  # the seed matters


def test_old_rule_is_reported_and_resplit_on_request(project: Settings, store: LocalStore) -> None:
    store.create_repo("demo-raw")
    raw = store.put("demo-raw", "master", _items(0, 40, random.Random(3)))
    old = Provenance(inputs=(raw.ref,), spec_hash=hashlib.sha256(b"old params").hexdigest())
    for name in ("train", "test"):
        store.create_repo(f"demo-{name}")
        store.put(f"demo-{name}", "master", {"business/1.txt": b"x"}, "old split", old)
    with pytest.raises(DataError, match=r"earlier rule.*cdl data split --resplit"):
        split(project, store)
    assert store.list_files("demo-test", "master") == ["business/1.txt"]  # untouched
    result = split(project, store, resplit=True)
    assert result.commits["test"].provenance.spec_hash.startswith(RULE + ":")
    split(project, store)  # the new rule's split needs no flag
