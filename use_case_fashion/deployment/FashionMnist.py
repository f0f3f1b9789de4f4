"""Seldon Core v1 model server of fashion-mnist (rendered by CDL; keep the logic in cdl).

Run locally with ``cdl deploy serve``; in the image it runs as
``seldon-core-microservice FashionMnist --service-type MODEL``.
The model artifact (``cdl deploy package``) is read from ``$CDL_ARTIFACT_DIR``, else
``/mnt/models``, else the ``artifact/`` folder next to this file. Validation, metrics and
Scoring Data (``$CDL_SCORING_URL``) are implemented once, in ``cdl_gitlab.serving.server``.
"""

from pathlib import Path

from cdl_gitlab.serving.server import CDLModel


class FashionMnist(CDLModel):
    """Serves fashion-mnist (keras, image input): class probabilities."""

    default_artifact_dir = Path(__file__).resolve().parent / "artifact"
