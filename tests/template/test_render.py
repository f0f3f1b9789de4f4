"""The template renders a valid project for every supported combination of answers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cdl_gitlab.config import parse_config
from rendering import render

FRAMEWORKS = ("pytorch", "keras")
STARTERS = ("blank", "news", "fashion")
TEXT_SUFFIXES = {".py", ".yml", ".yaml", ".json", ".md", ".txt", ".toml", ".cfg", ".xml", ".sh",
                 ".ini", ""}
SECRET_PATTERNS = {
    "an IPv4 address": re.compile(r"\b(?!127\.0\.0\.1\b|0\.0\.0\.0\b)(?:\d{1,3}\.){3}\d{1,3}\b"),
    "a password value": re.compile(r"(?i)password\s*[:=]\s*['\"]?[^\s'\"$]{3,}"),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "a GitLab token": re.compile(r"\bglpat-[0-9A-Za-z_-]{10,}"),
    "credentials in a URL": re.compile(r"[a-z]+://[^/\s:@]+:[^/\s@]+@"),
}


class _AnyTagLoader(yaml.SafeLoader):
    """Safe loader that accepts GitLab's custom tags such as ``!reference``."""


_AnyTagLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def project_files(project: Path) -> list[Path]:
    return sorted(
        path
        for path in project.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(project).parts
    )


def check_rendered_project(project: Path) -> None:
    """Every file parses, compiles, is ruff-clean, fully rendered and free of secrets."""
    files = project_files(project)
    assert files, f"nothing rendered in {project}"
    for path in files:
        relative = path.relative_to(project)
        if path.suffix not in TEXT_SUFFIXES and path.name not in {"Makefile", "Dockerfile"}:
            continue
        text = path.read_text(encoding="utf-8")
        assert "{{" not in text and "{%" not in text, f"{relative}: unrendered Jinja"
        for what, pattern in SECRET_PATTERNS.items():
            match = pattern.search(text)
            assert match is None, f"{relative}: contains {what}: {match.group(0)!r}"
        if path.suffix in {".yml", ".yaml"}:
            list(yaml.load_all(text, Loader=_AnyTagLoader))
        elif path.suffix == ".json":
            json.loads(text)
        elif path.suffix == ".xml":
            ElementTree.fromstring(text)
        elif path.suffix == ".py":
            compile(text, str(relative), "exec")
    parse_config((project / "cdl.yaml").read_text(), source="cdl.yaml")
    ruff = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "."],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("starter", STARTERS)
def test_every_framework_and_starter_renders(render_project, framework: str, starter: str):
    project = render_project(starter=starter, framework=framework)
    check_rendered_project(project)
    config = parse_config((project / "cdl.yaml").read_text())
    assert config.model.framework == framework
    expected_task = {"news": "text", "fashion": "image"}.get(starter, "text")
    assert config.model.task == expected_task
    if starter == "news":
        assert config.model.classes == ["business", "entertainment", "politics", "sport", "tech"]
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["starter"] == starter and answers["framework"] == framework


def test_cluster_profile_renders_its_endpoints(render_project):
    project = render_project(
        profile="cluster",
        determined_master="https://det.example.org:8080",
        pachyderm_address="grpc://pachd.example.org:30650",
        kubernetes_namespace="ml-news",
    )
    check_rendered_project(project)
    config = parse_config((project / "cdl.yaml").read_text())
    assert config.profile == "cluster"
    assert config.cluster.determined_master == "https://det.example.org:8080"
    assert config.cluster.namespace == "ml-news"


names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40
) | st.sampled_from(["A\U00010000", "Café \U0001F600 news", "O'Brien's \"model\""]).filter(lambda name: re.search(r"[A-Za-z]", name) and name.strip() == name)


@settings(
    max_examples=12,
    deadline=None,
    # Each example renders a project: report the first failure instead of shrinking for minutes.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    name=names,
    starter=st.sampled_from(STARTERS),
    framework=st.sampled_from(FRAMEWORKS),
    task=st.sampled_from(("text", "image")),
    threshold=st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
    compression=st.booleans(),
    monitoring=st.booleans(),
    profile=st.sampled_from(("local", "cluster")),
)
def test_fuzzed_answers_render_valid_projects(
    template_dir, tmp_path_factory, name, starter, framework, task, threshold, compression,
    monitoring, profile,
):
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,61}[a-z0-9]", slug):
        slug = "fuzzed-project"
    answers = {
        "project_name": name,
        "project_slug": slug,
        "starter": starter,
        "framework": framework,
        "accuracy_threshold": threshold,
        "include_compression": compression,
        "include_monitoring": monitoring,
        "profile": profile,
    }
    if starter == "blank":
        answers["task"] = task
    project = render(template_dir, tmp_path_factory.mktemp("fuzz") / "p", answers)
    check_rendered_project(project)
    config = parse_config((project / "cdl.yaml").read_text())
    assert config.project.name == name
    assert config.training.accuracy_threshold == pytest.approx(threshold)


def test_a_project_named_like_a_python_keyword_gets_a_usable_model_name(tmp_path, template_dir):
    """`True` slugs to `true`; the model (and its Seldon class) must not be `True`."""
    project = render(template_dir, tmp_path / "p", {"project_name": "True"})
    check_rendered_project(project)
    assert parse_config((project / "cdl.yaml").read_text()).model.name == "true-model"
    assert (project / "deployment" / "TrueModel.py").is_file()


@pytest.mark.parametrize(
    ("answers", "question"),
    [
        ({"project_name": "two\nlines"}, "project_name"),
        ({"project_slug": "Not A Slug"}, "project_slug"),
        ({"model_name": "none"}, "model_name"),
        ({"project_slug": "trailing-"}, "project_slug"),
        ({"model_name": "9lives"}, "model_name"),
        ({"starter": "tabular"}, "starter"),
        ({"framework": "jax"}, "framework"),
        ({"accuracy_threshold": 1.5}, "accuracy_threshold"),
        ({"accuracy_threshold": -0.1}, "accuracy_threshold"),
        ({"data_source": "ftp://example.org/data.zip"}, "data_source"),
        ({"starter": "blank", "class_names": "only-one"}, "class_names"),
        ({"starter": "blank", "class_names": "a,b,a"}, "class_names"),
        ({"profile": "cluster", "postgres_dsn_env": "postgresql://u:p@db/x"}, "postgres_dsn_env"),
        ({"profile": "cluster", "determined_master": "det.example.org"}, "determined_master"),
        ({"profile": "cluster", "kubernetes_namespace": "Bad_NS"}, "kubernetes_namespace"),
        ({"gitlab_url": "https://gitlab.example.org", "gitlab_project_path": "noslash"},
         "gitlab_project_path"),
        ({"gitlab_url": "gitlab.example.org"}, "gitlab_url"),
        ({"ci_library_version": "latest"}, "ci_library_version"),
        ({"image_prefix": "registry.example.org/x:latest"}, "image_prefix"),
    ],
)
def test_invalid_answers_are_rejected_naming_the_question(template_dir, tmp_path, answers,
                                                           question):
    dest = tmp_path / "project"
    with pytest.raises(ValueError) as error:
        render(template_dir, dest, answers)
    assert question in str(error.value)
    assert not (dest / "cdl.yaml").exists()


def _git(project: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=project, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_project_starts_with_main_and_dev(render_project):
    project = render_project(starter="news")
    branches = _git(project, "branch", "--format=%(refname:short)").split()
    assert sorted(branches) == ["dev", "main"]
    assert _git(project, "rev-parse", "--abbrev-ref", "HEAD") == "dev"
    assert _git(project, "rev-list", "--count", "main") == "1"
    assert _git(project, "rev-parse", "main") == _git(project, "rev-parse", "dev")
    assert _git(project, "status", "--porcelain") == ""
    tracked = _git(project, "ls-files").split()
    assert "cdl.yaml" in tracked and ".copier-answers.yml" in tracked
