"""The library's release pipeline under gitlab-ci-local, against a real local package index.

A tag ``X.Y.Z`` of the library snapshot (the files of ``ci-library/`` only) runs
check-version -> build-package -> publish-package -> release with the shell executor; the
upload goes to pypiserver on 127.0.0.1 instead of the GitLab package registry (variable
``PACKAGE_REGISTRY_URL``). Then the released version is installed from that index: into a
fresh virtual environment, and by a component job of a consumer project.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import time
import zipfile
from pathlib import Path

import cdl_ci_harness as h
import package_index as pi
import pytest

RELEASE_JOBS = ("check-version", "build-package", "publish-package", "release")


@pytest.fixture(scope="session")
def release_tools(ci_tools: None) -> None:
    missing = pi.ensure_release_tools()
    if missing:
        message = f"release tools missing (run scripts/install-ci-tools.sh): {missing}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


KEEP_A_CHANGELOG_TYPES = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_library_is_a_self_contained_project(library_version: str) -> None:
    """ci-library/ builds and releases alone: its own project files, and no path out of it."""
    library = h.LIBRARY_DIR
    for name in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", ".gitlab-ci.yml"):
        assert (library / name).is_file(), name
    readme = (library / "README.md").read_text(encoding="utf-8")
    assert "\n## Components\n" in readme and "\n## The package name\n" in readme
    for rel in h.worktree_files(library):
        if rel.endswith((".py", ".yml", ".toml", ".md", ".json")):
            text = (library / rel).read_text(encoding="utf-8")
            assert "../" not in text, f"{rel} refers to a path outside ci-library/"
    # Keep a Changelog: Unreleased first, then versions newest first, dated, known change types
    changelog = (library / "CHANGELOG.md").read_text(encoding="utf-8")
    versions = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", changelog, re.M)
    assert versions[0] == ("Unreleased", "")
    assert versions[1] == (library_version, versions[1][1]) and versions[1][1], versions
    assert versions[-1][0] == "0.1.0"
    assert all(date for _, date in versions[1:]), versions
    types = set(re.findall(r"^### (.+)$", changelog, re.M))
    assert types <= KEEP_A_CHANGELOG_TYPES, types


def _jobs(library: Path, sandbox: h.Sandbox, *args: str) -> dict[str, str]:
    return {name: job["when"] for name, job in h.list_jobs(library, *args, sandbox=sandbox).items()}


def test_release_jobs_run_on_semver_tags_only(
    sandbox: h.Sandbox, tmp_path: Path, library_version: str
) -> None:
    library = pi.library_checkout(sandbox, tmp_path / "ci-library", library_version)
    tag = _jobs(library, sandbox, *pi.tag_list_args(library_version))
    assert all(tag[job] == "on_success" for job in RELEASE_JOBS), tag
    assert tag.get("publish-pypi", "never") == "never"  # no PYPI_TOKEN
    with_token = _jobs(
        library, sandbox, *pi.tag_list_args(library_version), "--variable", "PYPI_TOKEN=t"
    )
    assert with_token["publish-pypi"] == "on_success"
    for not_a_release in ("v" + library_version, library_version + "-rc1"):
        other = _jobs(
            library, sandbox, *pi.tag_list_args(not_a_release), "--variable", "PYPI_TOKEN=t"
        )
        running = {
            job for job in (*RELEASE_JOBS, "publish-pypi") if other.get(job, "never") != "never"
        }
        assert not running, (not_a_release, running)
    branch = _jobs(library, sandbox, *h.branch_vars("main"))
    assert all(branch.get(job, "never") == "never" for job in RELEASE_JOBS), branch


def test_a_tag_that_is_not_the_package_version_fails_the_check(
    sandbox: h.Sandbox, tmp_path: Path, library_version: str
) -> None:
    library = pi.library_checkout(sandbox, tmp_path / "ci-library", "9.9.9")
    result = h.run_gcl(
        library, *pi.release_args("9.9.9", "check-version", needs=False), sandbox=sandbox
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert h.job_summary(output).get("check-version") == "failed", output[-3000:]
    assert (
        f"release: tag 9.9.9 is not the package version {library_version} "
        "(src/cdl_gitlab/__init__.py)" in output
    ), output[-3000:]


def test_a_version_bump_that_forgets_the_components_fails_the_check(
    sandbox: h.Sandbox, tmp_path: Path, library_version: str
) -> None:
    # __version__ and the tag say 9.9.9, the components still install library_version
    library = pi.library_checkout(sandbox, tmp_path / "ci-library", "9.9.9", version="9.9.9")
    result = h.run_gcl(
        library, *pi.release_args("9.9.9", "check-version", needs=False), sandbox=sandbox
    )
    output = result.stdout + result.stderr
    assert h.job_summary(output).get("check-version") == "failed", output[-3000:]
    stale = ", ".join(f"{name}.yml: {library_version}" for name in sorted(h.COMPONENTS))
    message = f"release: tag 9.9.9 but the components install another version by default: {stale}"
    assert message in output, output[-3000:]


@pytest.mark.slow
def test_release_publishes_to_the_package_index_and_a_project_installs_it(
    sandbox: h.Sandbox,
    release_tools: None,
    tmp_path: Path,
    library_version: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    version = library_version
    library = pi.library_checkout(sandbox, tmp_path / "ci-library", version)
    wheel = f"cdl_gitlab-{version}-py3-none-any.whl"
    sdist = f"cdl_gitlab-{version}.tar.gz"
    with (
        pi.package_index(tmp_path / "registry", tmp_path / "registry.log") as registry,
        pi.package_index(tmp_path / "public", tmp_path / "public.log") as public,
    ):
        # the release, and publish-pypi with a token against a second local index that
        # stands in for the public one (twine's TWINE_REPOSITORY_URL)
        start = time.perf_counter()
        result = h.run_gcl(
            library,
            *pi.release_args(version, "release", "publish-pypi", registry=registry.url),
            "--variable",
            "PYPI_TOKEN=local-pypi-test-token",
            # buildah does not run here: the role images are checked by their job lists
            "--variable",
            "CDL_RELEASE_IMAGES=false",
            "--variable",
            f"TWINE_REPOSITORY_URL={public.url}",
            sandbox=sandbox,
            extra_env=pi.release_env(),
        )
        wall = time.perf_counter() - start
        output = result.stdout + result.stderr
        durations = h.job_durations(output)
        with capsys.disabled():
            jobs = ", ".join(f"{job} {seconds:.1f} s" for job, seconds in durations.items())
            print(f"\nrelease pipeline {version}: {wall:.1f} s wall ({jobs})")
        assert result.returncode == 0, output[-6000:]
        status = h.job_summary(output)
        assert all(status.get(job) == "success" for job in (*RELEASE_JOBS, "publish-pypi")), status

        # both files on the registry index, and on the stand-in public index
        assert registry.files() == [wheel, sdist]
        page = registry.project_page("cdl-gitlab")
        assert wheel in page and sdist in page
        assert public.files() == [wheel, sdist]
        # the package data travels in both (the jobs validate against these schemas)
        with zipfile.ZipFile(registry.packages / wheel) as archive:
            assert "cdl_gitlab/schemas/lineage.json" in archive.namelist()
        with tarfile.open(registry.packages / sdist) as archive:
            names = archive.getnames()
        assert f"cdl_gitlab-{version}/src/cdl_gitlab/schemas/lineage.json" in names

        # the release notes are the CHANGELOG section of the tag
        notes = library / ".gitlab-ci-local" / "builds" / "release" / "release-notes.md"
        text = notes.read_text(encoding="utf-8")
        assert "### Changed" in text and "cdl-gitlab" in text
        assert "First version" not in text  # the 0.1.0 section is not part of these notes

        _install_into_fresh_venv(tmp_path / "fresh", registry, version)
        _component_installs_from_the_registry(sandbox, tmp_path / "project", registry, version)


def _install_into_fresh_venv(venv: Path, index: pi.PackageIndex, version: str) -> None:
    """pip install --index-url <index> --no-deps cdl-gitlab==X.Y.Z, then ``cdl --version``.

    The dependencies come from this test's environment through a path entry (not its
    ``.pth`` files, so the editable install of the checkout stays out of the way)."""
    env = pi.isolated_env()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "runner-deps.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8"
    )
    install = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--index-url",
            index.simple,
            "--no-deps",
            # the path entry above also shows this checkout's editable cdl-gitlab: install
            # the release into the fresh venv whatever pip finds already there
            "--ignore-installed",
            f"cdl-gitlab=={version}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    cdl = subprocess.run(
        [str(venv / "bin" / "cdl"), "--version"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cdl.returncode == 0, cdl.stdout + cdl.stderr
    assert version in cdl.stdout, cdl.stdout
    where = subprocess.run(
        [str(python), "-c", "import cdl_gitlab; print(cdl_gitlab.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(venv), where


def _component_installs_from_the_registry(
    sandbox: h.Sandbox, project: Path, index: pi.PackageIndex, version: str
) -> None:
    """A job of the data-pipeline component in a consumer project: cdl-gitlab from the
    registry (the local index) only, its dependencies under the template's constraints
    (``--no-index``: from the runner's environment)."""
    constraints = (h.REPO_ROOT / "template" / "constraints.txt").read_text(encoding="utf-8")
    config = h.setup_consumer(
        version,
        # the pip path (the runner's environment already has cdl-gitlab of this version,
        # which the default image path would take as the job image's)
        {"install": "pip", "cdl_index_url": index.simple, "pip_install_args": "--no-index"},
        {"cdl-installed": {"script": [h.WHERE_IS_CDL]}},
    )
    h.new_project(
        sandbox, project, "ml/consumer", {".gitlab-ci.yml": config, "constraints.txt": constraints}
    )
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    result = h.run_gcl(
        project,
        "--force-shell-executor",
        "--shell-isolation",
        "--max-job-name-padding",
        "0",
        "cdl-installed",
        sandbox=sandbox,
        extra_env={"PATH": path, "PYTHONPATH": ""},  # the job's cdl_gitlab: the installed one
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert f"cdl, version {version}" in output, output[-3000:]
    # imported from the job's virtual environment, where the registry's wheel was installed
    builds = project / ".gitlab-ci-local" / "builds" / "cdl-installed"
    site = r"/\.cache/cdl-venv/[0-9a-f]{16}/lib/python3\.11/site-packages/cdl_gitlab/__init__\.py"
    assert re.search("cdl_gitlab from " + re.escape(str(builds)) + site, output), output[-3000:]
