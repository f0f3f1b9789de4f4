"""The deployment/ folder as Copier renders it: the wrapper's file and class name match cdl."""

from __future__ import annotations

import ast
from pathlib import Path

from cdl_gitlab.serving.local_server import model_class_name
from rendering import render, snapshot_template


def test_copier_renders_the_wrapper_cdl_serves(tmp_path: Path) -> None:
    template = snapshot_template(tmp_path / "template")
    project = render(template, tmp_path / "project", {"starter": "news", "model_name": "bbc-news2"})
    deployment = project / "deployment"
    class_name = model_class_name("bbc-news2")
    assert class_name == "BbcNews2"
    assert sorted(p.name for p in deployment.iterdir()) == [
        ".gitignore",
        f"{class_name}.py",
        "Dockerfile",
        "seldondeployment.yaml",
        "smoke-request.json",
    ]
    tree = ast.parse((deployment / f"{class_name}.py").read_text())
    classes = [node.name for node in tree.body if isinstance(node, ast.ClassDef)]
    assert classes == [class_name]
    assert (deployment / ".gitignore").read_text().strip() == "artifact/"
    dockerfile = (deployment / "Dockerfile").read_text()
    assert f'"seldon-core-microservice", "{class_name}"' in dockerfile
    assert f"COPY --chown=seldon:seldon deployment/{class_name}.py" in dockerfile
