"""Seldon Core v1 model server of bbc-news (rendered by CDL; keep the logic in cdl).

Run locally with ``cdl deploy serve``; in the image it runs as
``seldon-core-microservice BbcNews --service-type MODEL``.
The model artifact (``cdl deploy package``) is read from ``$CDL_ARTIFACT_DIR``, else
``/mnt/models``, else the ``artifact/`` folder next to this file. Validation, metrics and
Scoring Data (``$CDL_SCORING_URL``) are implemented once, in ``cdl_gitlab.serving.server``.
"""

from pathlib import Path

from cdl_gitlab.serving.server import CDLModel


class BbcNews(CDLModel):
    """Serves bbc-news (pytorch, text input): class probabilities."""

    default_artifact_dir = Path(__file__).resolve().parent / "artifact"
