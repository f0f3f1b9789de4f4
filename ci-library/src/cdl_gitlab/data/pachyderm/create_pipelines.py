"""``cdl data deploy``: create or update the project's pipelines on Pachyderm.

The specs are sent as JSON through ``CreatePipelineV2`` (``update=True``) after the image
reference's ``$VAR`` / ``${VAR}`` placeholders are filled from the environment.
"""

from __future__ import annotations

import copy
import json
import os
from typing import TYPE_CHECKING, Any

from cdl_gitlab.data.pachyderm.runner import load_pipelines, order
from cdl_gitlab.data.pachyderm.spec import expand_image

if TYPE_CHECKING:
    from pachyderm_sdk import Client

    from cdl_gitlab.config import Settings


def rendered_specs(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    """The project's specs, upstream first, with the image tag filled in."""
    specs = []
    for pipeline in order(load_pipelines(settings.root)):
        spec = copy.deepcopy(pipeline.spec)
        spec["transform"]["image"] = expand_image(spec["transform"]["image"], os.environ)
        specs.append((pipeline.name, spec))
    return specs


def deploy_pipelines(
    settings: Settings, client: Client | None = None, dry_run: bool = False
) -> list[tuple[str, dict[str, Any]]]:
    """Create/update every pipeline; returns (name, spec sent)."""
    specs = rendered_specs(settings)
    if dry_run:
        return specs
    if client is None:
        from cdl_gitlab.data.stores.pachyderm_store import PachydermStore

        client = PachydermStore.from_address(settings.pachyderm_address).client
    for _name, spec in specs:
        client.pps.create_pipeline_v2(create_pipeline_request_json=json.dumps(spec), update=True)
    return specs
