"""Fashion-MNIST end to end on generated idx files, in a project rendered with starter=fashion:
`cdl data pipeline`, `cdl model train` (the MLP baseline and the CNN), the `cdl model
evaluate` gate, then `cdl deploy compress` (TFLite), `package` and `serve` (Seldon) of the CNN."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from cdl_gitlab.data.formats import idx_files as idx
from cdl_gitlab.data.formats.idx import FILES, png_bytes
from use_cases.fashion_data import FASHION_CLASSES, write_mirror

CDL = Path(sys.executable).with_name("cdl")


def cdl(project: Path, *args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(CDL), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, (args, result.stdout, result.stderr[-3000:])
    return result.stdout


def small_config(project: Path, name: str, **hparams: object) -> Path:
    """model/const.yaml with a few hyperparameters changed (fewer epochs, the architecture)."""
    config = yaml.safe_load((project / "model" / "const.yaml").read_text())
    config["name"] = f"{config['name']}-{name}"
    config["hyperparameters"].update(hparams)
    path = project / "model" / f"const.{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.slow
def test_fashion_use_case_end_to_end(render_project, tmp_path: Path) -> None:
    mirror = write_mirror(tmp_path / "mirror", 600, 200)
    project = render_project(starter="fashion", project_name="Fashion MNIST")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CDL_PROFILE", "CDL_CONFIG", "CDL_MODEL_VERSION")
    }
    env["CDL_DATA_MIRROR"] = str(mirror)

    out = cdl(project, "data", "pipeline", env=env)
    assert "collect: 4 idx files (train 600, test 200 images)" in out
    assert "train: 600 items, 600 kept, 0 discarded" in out
    assert "test: 200 items, 200 kept, 0 discarded" in out

    mlp = small_config(project, "mlp", arch="mlp", hidden=128, epochs=4)
    out = cdl(project, "model", "train", "-c", str(mlp.relative_to(project)), env=env)
    assert "registered fashion-mnist v1" in out
    out = cdl(project, "model", "evaluate", "--version", "1", env=env)
    assert "fashion-mnist v1 passes the gate" in out

    cnn = small_config(project, "cnn", arch="cnn", epochs=3)
    out = cdl(project, "model", "train", "-c", str(cnn.relative_to(project)), env=env)
    assert "registered fashion-mnist v2" in out
    out = cdl(project, "model", "evaluate", env=env)
    assert "fashion-mnist v2 passes the gate" in out

    from cdl_gitlab.serving import local_server

    out = cdl(project, "deploy", "compress", "--version", "2", env=env)
    assert "format           tflite (from v2)" in out
    assert "200 items" in out and "registered the compressed model as v3" in out
    out = cdl(project, "deploy", "package", env=env)
    assert "packaged fashion-mnist v3 (tflite)" in out

    test = idx.read_pair(mirror / FILES["test"]["images"], mirror / FILES["test"]["labels"])
    images = test.images[:8]
    port = local_server.free_port()
    out = cdl(
        project,
        "deploy",
        "serve",
        "--port",
        str(port),
        "--metrics-port",
        str(local_server.free_port()),
        env=env,
    )
    assert "serving fashion-mnist v3" in out
    try:
        request = tmp_path / "request.json"
        request.write_text(json.dumps({"data": {"ndarray": images.tolist()}}))
        answer = json.loads(
            cdl(project, "deploy", "predict", "--raw", "--json", str(request), env=env)
        )
        assert answer["data"]["names"] == FASHION_CLASSES
        probabilities = np.asarray(answer["data"]["ndarray"])
        assert probabilities.shape == (8, 10) and np.allclose(probabilities.sum(axis=1), 1, 1e-4)
        assert (probabilities.argmax(axis=1) == test.labels[:8]).mean() >= 0.75
        url = local_server.predictions_url(f"http://127.0.0.1:{port}")
        status, scaled = local_server.post_json(url, {"data": {"ndarray": (images / 255).tolist()}})
        assert status == 200 and np.allclose(scaled["data"]["ndarray"], probabilities, atol=1e-4)
        png = base64.b64encode(png_bytes(images[0])).decode()
        status, single = local_server.post_json(url, {"binData": png})
        assert status == 200, single
        assert single["data"]["tensor"]["shape"] == [1, 10]  # Seldon answers binData so
        assert np.allclose(single["data"]["tensor"]["values"], probabilities[0], atol=1e-4)
        status, wrong = local_server.post_json(url, {"data": {"ndarray": [[1, 2, 3]]}})
        assert status == 400 and "28x28" in wrong["status"]["info"]
    finally:
        cdl(project, "deploy", "stop", env=env)
