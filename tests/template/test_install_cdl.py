"""`tools/install_cdl.py` of a rendered project: where `make setup` takes the CDL library from."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from rendering import REPO_ROOT

SCRIPT = REPO_ROOT / "template" / "tools" / "install_cdl.py"


def load_installer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("install_cdl", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["install_cdl"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


installer = load_installer()


def dry_run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installer's pip commands, with no CDL_* variable set."""
    return subprocess.run(
        [sys.executable, str(project / "tools" / "install_cdl.py"), "--dry-run", *args],
        cwd=project,
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
    )


def test_a_project_rendered_from_a_local_checkout_installs_from_it(tmp_path: Path):
    subprocess.run(
        [
            str(Path(sys.executable).parent / "copier"),
            "copy",
            "--trust",
            "--defaults",
            "-d",
            "project_name=Local",
            str(REPO_ROOT),
            "proj",
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    result = dry_run(tmp_path / "proj", "--extras", "serve", "--constraints", "constraints.txt")
    assert result.returncode == 0, result.stderr
    assert f"cdl-gitlab from the local template {REPO_ROOT}\n" in result.stdout
    # built from a clean copy of the checkout's ci-library/ (see the next test)
    assert re.search(r"'cdl-gitlab\[serve\] @ file://\S+/cdl-wheel-\w+/ci-library'", result.stdout)
    assert "-c constraints.txt" in result.stdout


def test_a_local_library_is_built_from_a_clean_copy(tmp_path: Path, monkeypatch):
    """Build leftovers in the checkout (setuptools reuses an existing build/ tree, so stale
    modules would land in the wheel) never reach pip: it gets a copy without them."""
    library = tmp_path / "cdl" / "ci-library"
    shutil.copytree(REPO_ROOT / "ci-library" / "src", library / "src")
    shutil.copy(REPO_ROOT / "ci-library" / "pyproject.toml", library)
    (library / "build" / "lib" / "cdl_gitlab").mkdir(parents=True)
    (library / "build" / "lib" / "cdl_gitlab" / "stale.py").write_text("")
    (library / "src" / "cdl_gitlab.egg-info").mkdir(exist_ok=True)
    # a stand-in for the venv's python: records what `python -m pip install ...` was given
    seen = tmp_path / "seen.txt"
    fake_python = tmp_path / "python"
    fake_python.write_text(
        "#!/bin/sh\nfor a; do case $a in cdl-gitlab*@*) d=${a#*@ file://};"
        f" (cd $d && find . | sort) > {seen};; esac; done\n"
    )
    fake_python.chmod(0o755)
    args = installer.argparse.Namespace(
        answers=None,
        extras="serve",
        version="0.2.0",
        constraints="",
        requirements=[],
        packages=[],
        python=str(fake_python),
        dry_run=False,
    )
    local = installer.Source("a local checkout", folder=library)
    monkeypatch.setattr(installer, "choose_source", lambda *_args: local)
    installer.install(args, {})
    files = seen.read_text().split()
    assert "./src/cdl_gitlab/__init__.py" in files and "./pyproject.toml" in files
    assert not [f for f in files if "build" in f.split("/") or f.endswith(".egg-info")]


@pytest.mark.parametrize(
    ("src", "commit", "expected"),
    [
        (
            "https://gitlab.example.org/ml/cdl.git",
            "0.2.0",
            "git+https://gitlab.example.org/ml/cdl.git@0.2.0#subdirectory=ci-library",
        ),
        (
            "gh:acme/cdl",
            "0.2.0-3-gabc1234",
            "git+https://github.com/acme/cdl.git@abc1234#subdirectory=ci-library",
        ),
        (
            "git@gitlab.example.org:ml/cdl.git",
            "deadbee",
            "git+ssh://git@gitlab.example.org/ml/cdl.git@deadbee#subdirectory=ci-library",
        ),
    ],
)
def test_a_git_template_installs_at_the_recorded_commit(src: str, commit: str, expected: str):
    source = installer.source_from_answers(
        {"_src_path": src, "_commit": commit}, "serve", Path("/nowhere")
    )
    assert source.requirement == f"cdl-gitlab[serve] @ {expected}"


def test_relative_template_paths_are_seen_from_the_project(tmp_path: Path):
    """The use cases record `_src_path: ..`: this repository, seen from the use case."""
    source = installer.source_from_answers({"_src_path": ".."}, "", REPO_ROOT / "use_case_news")
    assert source.requirement == f"cdl-gitlab @ {(REPO_ROOT / 'ci-library').as_uri()}"


def test_a_template_source_without_the_library_is_a_clear_error(tmp_path: Path):
    with pytest.raises(installer.InstallError, match=r"not a CDL checkout.*CDL_SOURCE"):
        installer.source_from_answers({"_src_path": str(tmp_path)}, "", tmp_path)
    with pytest.raises(installer.InstallError, match="CDL_INDEX_URL"):
        installer.choose_source({}, "", "0.2.0", None)
    with pytest.raises(installer.InstallError, match=r"releases X\.Y\.Z"):
        installer.choose_source({"CDL_INDEX_URL": "http://i/simple"}, "", "a" * 40, None)


def test_cdl_source_overrides_everything(tmp_path: Path):
    env = {"CDL_SOURCE": str(REPO_ROOT), "CDL_INDEX_URL": "http://127.0.0.1:9/simple"}
    source = installer.choose_source(env, "serve", "0.2.0", tmp_path / "absent.yml")
    assert source.editable == f"{REPO_ROOT / 'ci-library'}[serve]"


def write_wheel(folder: Path, marker: str, version: str = "9.9.9") -> Path:
    """A minimal valid wheel of cdl-gitlab ``version`` whose module says ``marker``."""
    folder.mkdir(parents=True)
    wheel = folder / f"cdl_gitlab-{version}-py3-none-any.whl"
    info = f"cdl_gitlab-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("cdl_gitlab/__init__.py", f"MARKER = {marker!r}\n")
        archive.writestr(
            f"{info}/METADATA",
            f"Metadata-Version: 2.1\nName: cdl-gitlab\nVersion: {version}\n"
            "Provides-Extra: cluster\n",
        )
        archive.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(f"{info}/RECORD", "")
    (folder / "index.html").write_text(f'<a href="{wheel.name}">{wheel.name}</a>\n')
    return wheel


def test_a_release_comes_from_the_library_index_only(tmp_path: Path, monkeypatch):
    """Another index that serves the same name (PIP_EXTRA_INDEX_URL, pip's config) is never
    asked for the package: the wheel downloaded is the library registry's."""
    ours = write_wheel(tmp_path / "ours" / "simple" / "cdl-gitlab", "ours")
    write_wheel(tmp_path / "theirs" / "simple" / "cdl-gitlab", "theirs")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", (tmp_path / "theirs" / "simple").as_uri())
    source = installer.choose_source(
        {"CDL_INDEX_URL": (tmp_path / "ours" / "simple").as_uri()}, "serve", "9.9.9", None
    )
    requirement = installer.download_release(
        source, "serve", sys.executable, tmp_path / "wheels", dry_run=False
    )
    downloaded = tmp_path / "wheels" / ours.name
    assert requirement == f"cdl-gitlab[serve] @ {downloaded.as_uri()}"
    with zipfile.ZipFile(downloaded) as archive:
        assert archive.read("cdl_gitlab/__init__.py") == b"MARKER = 'ours'\n"


def test_another_index_is_never_asked_for_the_package(tmp_path: Path, monkeypatch):
    """The library registry lacks the release; another index that has it (the environment's
    extra index, pip's config file) is not used: the download fails."""
    (tmp_path / "ours" / "simple" / "cdl-gitlab").mkdir(parents=True)
    (tmp_path / "ours" / "simple" / "cdl-gitlab" / "index.html").write_text("")
    theirs = tmp_path / "theirs" / "simple"
    write_wheel(theirs / "cdl-gitlab", "theirs")
    config = tmp_path / "pip.conf"
    config.write_text(f"[global]\nextra-index-url = {theirs.as_uri()}\n")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", theirs.as_uri())
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    source = installer.choose_source(
        {"CDL_INDEX_URL": (tmp_path / "ours" / "simple").as_uri()}, "", "9.9.9", None
    )
    with pytest.raises(subprocess.CalledProcessError):
        installer.download_release(source, "", sys.executable, tmp_path / "w", dry_run=False)
    assert not (tmp_path / "w").exists() or not list((tmp_path / "w").iterdir())


def test_the_data_image_installs_the_release_from_the_registry_only(render_project, tmp_path: Path):
    """The RUN line of data/Dockerfile, run by sh in a fresh virtual environment (no docker
    here), with the registry passed under its former build-argument name."""
    project = render_project(starter="news")
    dockerfile = (project / "data" / "Dockerfile").read_text()
    run_line = next(
        block for block in dockerfile.split("\nRUN ")[1:] if "install_cdl.py" in block
    ).split("\nCOPY ")[0]
    version = yaml.safe_load((project / ".copier-answers.yml").read_text())["ci_library_version"]
    registry = tmp_path / "registry" / "simple"
    write_wheel(registry / "cdl-gitlab", "registry", version)
    build = tmp_path / "app"
    build.mkdir()
    for name in ("constraints.txt", "data/requirements.txt", "tools/install_cdl.py"):
        shutil.copy2(project / name, build / Path(name).name)
    venv = tmp_path / "image-python"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "PIP_EXTRA_INDEX_URL": registry.as_uri(),  # the build argument's former name
        "PIP_NO_INDEX": "1",  # the fake release has no dependencies to fetch
        "CDL_INDEX_URL": "",
    }
    result = subprocess.run(
        ["sh", "-c", run_line.replace("\\\n", " ")],
        cwd=build,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"release {version} from {registry.as_uri()} only" in result.stdout
    marker = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import cdl_gitlab; print(cdl_gitlab.MARKER)"],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=True,
    )
    assert marker.stdout.strip() == "registry"
