"""The self-contained checkpoint: what serving needs, written beside Determined's own files.

``<checkpoint>/cdl_model.json`` (framework, task, network builder and its arguments, weights
file), ``<checkpoint>/features/`` (:class:`cdl_gitlab.features.state.FeatureState`) and the weights
(``model_state.pt`` for PyTorch; Determined's ``model_checkpoint`` for Keras).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cdl_gitlab.features.state import FeatureState
from cdl_gitlab.fsutil import atomic_write_json

SPEC_FILE = "cdl_model.json"
FORMAT = 1
BUILDERS = {
    "pytorch": "cdl_gitlab.model.networks_torch:build_network",
    "keras": "cdl_gitlab.model.networks_keras:build_network",
}
WEIGHTS = {"pytorch": "model_state.pt", "keras": "model_checkpoint"}


@dataclass
class ModelSpec:
    """How to rebuild the trained network for inference."""

    framework: str
    task: str
    input_shape: list[int]
    classes: list[str]
    hparams: dict[str, Any]
    builder: str = ""
    weights: str = ""
    data: dict[str, str] = field(default_factory=dict)
    format: int = FORMAT

    def __post_init__(self) -> None:
        if self.framework not in BUILDERS:
            raise ValueError(f"unknown framework {self.framework!r} (pytorch, keras)")
        self.builder = self.builder or BUILDERS[self.framework]
        self.weights = self.weights or WEIGHTS[self.framework]
        self.input_shape = [int(v) for v in self.input_shape]


def write_model_files(folder: Path, spec: ModelSpec, features: FeatureState) -> None:
    """Write ``cdl_model.json`` and ``features/`` into a checkpoint folder."""
    features.save(folder)
    atomic_write_json(Path(folder) / SPEC_FILE, asdict(spec))


def read_spec(folder: Path) -> ModelSpec:
    path = Path(folder) / SPEC_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} is not a CDL checkpoint (no {SPEC_FILE}); train with `cdl model train`"
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: unsupported format {data.get('format')!r} (expected {FORMAT})")
    return ModelSpec(**data)
