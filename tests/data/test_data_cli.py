"""``cdl data ...`` end to end on the local profile: the pipeline, labels, load_split.

One project runs the whole pipeline once (module fixture); the tests read it, rerun steps
(no-ops) and add commits only on other branches.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from data_helpers import CLASSES, create_project, make_corpus

from cdl_gitlab.cli import cli, main
from cdl_gitlab.cli.data_cmd import data
from cdl_gitlab.config import Settings, parse_config
from cdl_gitlab.data.dataset import load_split, require_items
from cdl_gitlab.data.errors import DataError, MissingDataError, SpecError
from cdl_gitlab.data.steps.pipeline import check_min_items
from cdl_gitlab.data.stores.local_store import LocalStore
from cdl_gitlab.errors import ConfigError
from cdl_gitlab.model.inputs import load_training_inputs

if "data" not in cli.commands:
    cli.add_command(data)


def invoke(settings: Settings, *args: str) -> Result:
    return CliRunner(mix_stderr=False).invoke(
        cli, ["--config", str(settings.root / "cdl.yaml"), "data", *args], catch_exceptions=False
    )


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Result]:
    """A project whose `cdl data pipeline` ran on a generated BBC-layout zip."""
    tmp = tmp_path_factory.mktemp("cli")
    expected = make_corpus(tmp / "corpus" / "bbc", per_class=10)
    archive = tmp / "bbc.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in expected:
            handle.write(tmp / "corpus" / "bbc" / path, f"bbc/{path}")
    settings = create_project(tmp / "project", source=archive.as_uri())
    return settings, invoke(settings, "pipeline")


def test_pipeline_summary_and_labels(ran: tuple[Settings, Result]) -> None:
    settings, result = ran
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "collect: 37 files" in out
    assert "discarded 1 (outside_class_folder 1; e.g. bbc/README.TXT: outside_class_folder)" in out
    assert "demo-train-validate: ran 1 datum(s)" in out
    assert "store-labels (train):" in out and "0 rejected" in out
    store = LocalStore(settings.state_dir / "data")
    summaries = {
        s: json.loads(store.read(f"demo-{s}-validate", "master", "summary.json"))
        for s in ("train", "test")
    }
    assert sum(s["total"] for s in summaries.values()) == 37  # README skipped at collection
    reasons: dict[str, int] = {}
    for summary in summaries.values():
        for reason, count in summary["reasons"].items():
            reasons[reason] = reasons.get(reason, 0) + count
    assert reasons == {"binary": 1, "empty": 2, "extension": 1, "oversized": 1, "too_short": 1}
    for split, summary in summaries.items():
        assert f"{split}: {summary['total']} items, {summary['kept']} kept" in out

    split = load_split(settings, "train")
    assert split.classes == CLASSES
    assert split.version.repo == "demo-train-validate"
    assert split.version.commit == store.resolve("demo-train-validate", "master").id
    assert len(split.items) == summaries["train"]["kept"]
    assert all(path.startswith(label + "/") for path, label, _ in split.items)
    assert not split.unlabeled and not split.missing_files
    assert split.labels_version.count == len(split.items)


def test_rerun_is_a_no_op(ran: tuple[Settings, Result]) -> None:
    settings, _ = ran
    store = LocalStore(settings.state_dir / "data")
    heads = {repo: store.list_branches(repo) for repo in store.list_repos()}
    before = load_split(settings, "train").labels_version
    for step in ("collect", "split"):
        assert invoke(settings, step).exit_code == 0
    rerun = invoke(settings, "run")
    assert rerun.exit_code == 0
    assert rerun.stdout.count("up to date") == 4
    assert {repo: store.list_branches(repo) for repo in store.list_repos()} == heads
    assert load_split(settings, "train").labels_version == before


def test_load_split_reports_unlabeled_and_missing(ran: tuple[Settings, Result]) -> None:
    settings, _ = ran
    store = LocalStore(settings.state_dir / "data")
    kept = [p for p in store.list_files("demo-test-validate", "master") if p != "summary.json"]
    store.create_branch("demo-test-validate", "edited", "master")
    new = {p: store.read("demo-test-validate", "master", p) for p in kept[1:]}
    new["sport/new.txt"] = b"n" * 100
    store.put("demo-test-validate", "edited", new)
    split = load_split(settings, "test", ref="edited")
    assert split.missing_files == [kept[0]]
    assert split.unlabeled == ["sport/new.txt"]
    assert len(split.items) == len(kept) - 1
    assert len(load_split(settings, "test").items) == len(kept)


def test_label_commands(ran: tuple[Settings, Result], tmp_path: Path) -> None:
    settings, _ = ran
    tasks = tmp_path / "tasks.json"
    result = invoke(settings, "labels", "export-tasks", "--split", "test", "-o", str(tasks))
    assert result.exit_code == 0
    payload = json.loads(tasks.read_text())
    assert payload and {"path", "text", "repo", "branch", "commit"} <= set(payload[0]["data"])
    export = tmp_path / "export.json"
    result = invoke(settings, "labels", "generate", "--split", "test", "-o", str(export))
    assert result.exit_code == 0
    entries = json.loads(export.read_text())
    assert len(entries) == len(payload)
    entries.append({"id": "broken"})
    export.write_text(json.dumps(entries))
    result = invoke(settings, "labels", "import", str(export), "--split", "test")
    assert result.exit_code == 0
    # the pipeline imported the same folder labels already: idempotent
    assert f"0 inserted, 0 updated, {len(entries) - 1} unchanged, 1 rejected" in result.stdout
    assert "task broken" in result.stderr
    listing = invoke(settings, "ls")
    assert "demo-raw" in listing.stdout and "demo-test-validate" in listing.stdout
    log = invoke(settings, "log", "demo-test-validate")
    assert "input demo-test@" in log.stdout


def test_lint_command(project: Settings) -> None:
    ok = invoke(project, "lint")
    assert ok.exit_code == 0 and "4 pipeline spec(s) valid" in ok.stdout
    spec = project.root / "data" / "pipelines" / "train-validate.json"
    spec.write_text(spec.read_text().replace('"cmd"', '"cmdd"'))
    bad = invoke(project, "lint", str(spec))
    assert bad.exit_code == 1
    assert f"{spec}: transform.cmdd: unknown field (did you mean cmd?)" in bad.stderr


def test_deploy_dry_run_fills_the_image_tag(
    project: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI_REGISTRY_IMAGE", "registry.example.org/ml/demo")
    monkeypatch.setenv("CDL_IMAGE_TAG", "0123abcd")
    result = invoke(project, "deploy", "--dry-run")
    assert result.exit_code == 0
    assert '"image": "registry.example.org/ml/demo/data:0123abcd"' in result.stdout
    digest = "sha256:" + "0f" * 32
    pinned = invoke(project, "deploy", "--dry-run", "--image-digest", f"{digest}\n")
    assert pinned.exit_code == 0
    assert f'"image": "registry.example.org/ml/demo/data:0123abcd@{digest}"' in pinned.stdout
    with pytest.raises(SpecError, match="not of the form sha256:<64 hex digits>"):
        invoke(project, "deploy", "--dry-run", "--image-digest", "latest")


def test_training_data_is_required_before_training(ran: tuple[Settings, Result]) -> None:
    settings, _ = ran
    store = LocalStore(settings.state_dir / "data")
    commit = require_items(settings, "train", store=store)
    assert commit.id == store.resolve("demo-train-validate", "master").id
    store.create_branch("demo-train-validate", "unlabeled", "master")
    store.put("demo-train-validate", "unlabeled", {"sport/new.txt": b"n" * 100})
    with pytest.raises(MissingDataError, match=r"no labelled train items at .* \(1 without a "):
        load_training_inputs({"train": {"ref": "unlabeled"}}, {}, settings)
    store.create_branch("demo-train-validate", "emptied", "master")
    store.put("demo-train-validate", "emptied", {"summary.json": b"{}"})
    with pytest.raises(MissingDataError, match=r"demo-train-validate@\w{12} has no items"):
        require_items(settings, "train", "emptied", store)


def test_min_items_names_the_short_split(project: Settings) -> None:
    results = {
        "train": {"kept": 20, "discarded": 0, "discarded_items": []},
        "test": {"kept": 4, "discarded": 0, "discarded_items": []},
    }
    with pytest.raises(DataError) as raised:
        check_min_items(project, results)
    assert str(raised.value) == (
        "too few items to train and test on (test kept 4; data.min_items: 5). Add items to "
        "the data source (folders <class>/<file>), then run `cdl data pipeline` again"
    )
    results["test"]["kept"] = 5
    check_min_items(project, results)
    text = (project.root / "cdl.yaml").read_text()
    assert parse_config(text).data.min_items == 5
    assert parse_config(text.replace("  min_items: 5\n", "")).data.min_items == 10
    with pytest.raises(ConfigError, match=r"data\.min_items: Input should be greater than"):
        parse_config(text.replace("min_items: 5", "min_items: 0"))


def _fails(settings: Settings, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """The ``cdl: error:`` message of a ``cdl data`` command that exits 1."""
    with pytest.raises(SystemExit) as caught:
        main(["--config", str(settings.root / "cdl.yaml"), "data", *args])
    assert caught.value.code == 1
    last = capsys.readouterr().err.splitlines()[-1]  # after the log lines of discarded items
    assert last.startswith("cdl: error: ")
    return last


def test_steps_that_keep_nothing_exit_non_zero(
    make_project: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_project()
    source = settings.root.parent / "links"
    (source / "business").mkdir(parents=True)
    (source / "business" / "passwd.txt").symlink_to("/etc/passwd")
    (source / "sport").mkdir()
    os.mkfifo(source / "sport" / "pipe.txt")
    monkeypatch.setenv("CDL_DATA_MIRROR", str(source))
    err = _fails(settings, capsys, "collect")
    assert "no <class>/<file> items found, discarded 2 (special_file 1, symlink 1;" in err

    store = LocalStore(settings.state_dir / "data")
    store.create_repo("demo-raw")
    store.put("demo-raw", "master", {"a/1.txt": b"same", "b/1.txt": b"same", "a/2.txt": b"x"})
    err = _fails(settings, capsys, "split")
    assert "split: 3 raw files gave train" in err
    assert "2 conflicting duplicates dropped); both sets need items" in err
    assert "demo-train" not in store.list_repos()  # nothing committed
