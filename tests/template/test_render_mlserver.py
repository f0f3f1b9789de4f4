"""A project rendered with serving_engine mlserver: its files, and (slow) MLServer serving it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from test_render import check_rendered_project

from cdl_gitlab.config import load_settings, parse_config
from rendering import render

REPO = Path(__file__).resolve().parents[2]
CONSTRAINTS = (
    REPO / "template" / "{% if serving_engine == 'mlserver' %}constraints-mlserver.txt{% endif %}"
)


def test_mlserver_engine_renders_its_setup_image_and_readme(render_project) -> None:
    project = render_project(serving_engine="mlserver", framework="pytorch", model_name="news-demo")
    check_rendered_project(project)
    assert parse_config((project / "cdl.yaml").read_text()).serving.engine == "mlserver"
    shipped = (project / "constraints-mlserver.txt").read_text(encoding="utf-8")
    assert shipped == CONSTRAINTS.read_text(encoding="utf-8")
    assert "mlserver==1.7.1" in shipped.splitlines()
    makefile = (project / "Makefile").read_text(encoding="utf-8")
    assert "setup: $(BIN)/cdl $(MLSERVER_VENV)/bin/mlserver" in makefile
    assert "tools/install_cdl.py --python $(MLSERVER_VENV)/bin/python" in makefile
    assert "--extras serve-mlserver" in makefile and "constraints-mlserver.txt" in makefile
    dry = subprocess.run(
        ["make", "-n", "setup"], cwd=project, capture_output=True, text=True, check=True
    ).stdout
    assert (
        "-m venv .venv-mlserver" in dry
        and ".venv-mlserver/bin/pip install --quiet torch==2.13.0" in dry
    )
    dockerfile = (project / "deployment" / "Dockerfile").read_text(encoding="utf-8")
    assert "--extras serve-mlserver" in dockerfile and "seldon" not in dockerfile.lower()
    assert '"cdl_gitlab.serving.mlserver_guard", "/app/mlserver"' in dockerfile
    assert "python -m cdl_gitlab.serving.mlserver_local /app/mlserver /app/artifact" in dockerfile
    readme = (project / "README.md").read_text(encoding="utf-8")
    assert "/v2/models/news-demo/infer" in readme and ".venv-mlserver" in readme
    assert "KServe InferenceServices" in readme and "SeldonDeployments" not in readme
    # no Seldon wrapper and no SeldonDeployment: the InferenceService is rendered by cdl
    deployment = sorted(path.name for path in (project / "deployment").iterdir())
    assert deployment == [".gitignore", "Dockerfile", "smoke-request.json"], deployment
    # the smoke test's body: a JSON list, which `cdl deploy predict --json` sends as V2
    smoke = json.loads((project / "deployment" / "smoke-request.json").read_text())
    assert isinstance(smoke, list) and len(smoke) == 1 and isinstance(smoke[0], str), smoke
    # the pipeline serves locally with MLServer: its role image or its own environment
    ci = (project / ".gitlab-ci.yml").read_text(encoding="utf-8")
    deploy = [i for i in yaml.safe_load(ci)["include"] if "deployment-pipeline" in str(i)]
    [inputs] = [i["inputs"] for i in deploy]
    assert inputs["serving_engine"] == "mlserver"
    assert inputs["mlserver_requirement"].startswith("cdl-gitlab[serve-mlserver]")
    assert inputs["mlserver_constraints_file"] == "constraints-mlserver.txt"
    assert "constraints-mlserver.txt" in inputs["changes"]


def test_seldon_engine_renders_no_mlserver_files(render_project) -> None:
    project = render_project(framework="pytorch")
    assert not (project / "constraints-mlserver.txt").exists()
    assert "MLSERVER_VENV" not in (project / "Makefile").read_text(encoding="utf-8")
    assert "seldon-core-microservice" in (project / "deployment" / "Dockerfile").read_text()
    deployment = sorted(path.name for path in (project / "deployment").iterdir())
    assert "seldondeployment.yaml" in deployment and any(
        name.endswith(".py") for name in deployment
    ), deployment
    ci = yaml.safe_load((project / ".gitlab-ci.yml").read_text(encoding="utf-8"))
    assert "serving_engine" not in str(ci) and "constraints-mlserver" not in str(ci)


def test_keras_with_mlserver_is_refused(template_dir, tmp_path) -> None:
    with pytest.raises(ValueError) as error:
        render(template_dir, tmp_path / "p", {"serving_engine": "mlserver", "framework": "keras"})
    assert "serving_engine" in str(error.value)


@pytest.mark.slow
def test_rendered_mlserver_project_serves_with_cdl_deploy(render_project, tmp_path) -> None:
    sys.path.insert(0, str(REPO / "tests" / "deploy"))
    from deploy_models import mlserver_executable, register, torch_text_checkpoint

    from cdl_gitlab.cli.app import AppContext
    from cdl_gitlab.cli.deploy_cmd import deploy
    from cdl_gitlab.serving import local_server

    executable = mlserver_executable()
    project = render_project(
        serving_engine="mlserver",
        framework="pytorch",
        starter="blank",
        model_name="news-demo",
        class_names="politics,sport,tech",
    )
    config = yaml.safe_load((project / "cdl.yaml").read_text())
    config["deployment"]["local_port"] = local_server.free_port()
    config["deployment"]["metrics_port"] = local_server.free_port()
    (project / "cdl.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    settings = load_settings(project / "cdl.yaml")
    register(settings, torch_text_checkpoint(tmp_path / "ckpt"))
    runner = CliRunner()
    app = AppContext(project / "cdl.yaml", None)
    env = {"CDL_MLSERVER": str(executable)}
    try:
        served = runner.invoke(deploy, ["serve"], obj=app, env=env)
        assert served.exit_code == 0, (served.output, served.exception)
        assert "/v2/models/news-demo/infer" in served.output
        predicted = runner.invoke(deploy, ["predict", "football goal", "vote"], obj=app)
        assert predicted.exit_code == 0, predicted.output
        assert [line.split()[0] for line in predicted.output.splitlines()[:2]] == [
            "sport",
            "politics",
        ]
        info = local_server.read_server(settings)
        assert info is not None and info.engine == "mlserver"
        status, answer = local_server.post_json(info.predict_url, {"inputs": "x"})
        assert status == 400 and answer["error"].startswith("BAD_PAYLOAD"), answer
        settings_file = settings.state_dir / "mlserver" / "news-demo" / "model-settings.json"
        assert json.loads(settings_file.read_text())["parameters"]["uri"] == info.artifact
    finally:
        stopped = runner.invoke(deploy, ["stop"], obj=app)
    assert stopped.exit_code == 0 and "stopped news-demo v1" in stopped.output
    assert local_server.read_server(settings) is None
