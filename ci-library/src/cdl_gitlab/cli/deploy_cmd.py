"""``cdl deploy``: package, serve, predict, compress, manifest, apply, rollback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cdl_gitlab.cli.app import AppContext, pass_app
from cdl_gitlab.errors import CDLError
from cdl_gitlab.serving.local_server import DEFAULT_THREADS, DEFAULT_WORKERS

VERSION = click.option(
    "--version",
    "version",
    type=click.IntRange(min=1),
    default=None,
    help="Model version (default: the latest registered).",
)
ENV = click.option(
    "--env",
    "environment",
    type=click.Choice(["staging", "production"]),
    required=True,
    help="Target environment (production only from $CDL_PRODUCTION_BRANCH).",
)
IMAGE = click.option(
    "--image", default=None, help="Serving image pinned by digest: <repo>@sha256:<digest>."
)
TAG = click.option(
    "--tag",
    default=None,
    help="Commit SHA the image is tagged with (default: $CI_COMMIT_SHA).",
)


@click.group()
def deploy() -> None:
    """The deployment pipeline: artifacts, local Seldon serving, compression, Kubernetes."""


@deploy.command("package")
@VERSION
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Artifact folder (default: <state_dir>/artifacts/<model>-v<N>); the image copies "
    "deployment/artifact.",
)
@click.option(
    "--measure-memory/--no-measure-memory",
    default=None,
    help="Measure the serving memory of the model in a fresh process (recorded in model.json "
    "and the registry; deployment.memory: auto derives the pods' limit from it). Default: on "
    "the cluster profile with deployment.memory: auto, the one place that reads it (it costs a "
    "model load, 20-30 s).",
)
@pass_app
def package(
    app: AppContext, version: int | None, out: Path | None, measure_memory: bool | None
) -> None:
    """Export a registered version into a self-contained artifact folder."""
    from cdl_gitlab.deploy.memory import METADATA_KEY, MI, MemoryMeasurement, memory_limit
    from cdl_gitlab.deploy.package import package_version
    from cdl_gitlab.serving.memory_probe import measure_artifact

    if measure_memory is None:
        settings = app.settings
        measure_memory = (
            settings.profile == "cluster" and settings.config.deployment.memory == "auto"
        )
    measure = measure_artifact if measure_memory else None
    folder, manifest = package_version(app.settings, version, out, measure)
    click.echo(
        f"packaged {manifest.name} v{manifest.version} ({manifest.format}) into {folder}\n"
        f"checksum {manifest.checksum}"
    )
    if METADATA_KEY in manifest.data:
        measured = MemoryMeasurement.from_dict(manifest.data[METADATA_KEY])
        workers = app.settings.config.deployment.workers
        click.echo(
            f"serving memory: main process {measured.base_rss / MI:.0f} Mi, per worker "
            f"{measured.worker_private / MI:.0f} Mi private ({measured.worker_peak_rss / MI:.0f}"
            f" Mi peak RSS); limit with {workers} worker(s): "
            f"{memory_limit(measured, workers) // MI}Mi"
        )


@deploy.command("serve")
@VERSION
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="REST port (default: deployment.local_port).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Prometheus metrics port (default: deployment.metrics_port).",
)
@click.option(
    "--grpc-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Also serve gRPC on this port (off by default).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=DEFAULT_WORKERS,
    show_default=True,
    help="Server processes (each loads the model).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=DEFAULT_THREADS,
    show_default=True,
    help="Threads per server process (1: gunicorn's sync workers, one request each).",
)
@click.option("--foreground", is_flag=True, help="Stay attached; Ctrl-C stops the server.")
@pass_app
def serve(
    app: AppContext,
    version: int | None,
    port: int | None,
    metrics_port: int | None,
    grpc_port: int | None,
    workers: int,
    threads: int,
    foreground: bool,
) -> None:
    """Serve a version on localhost with the engine of cdl.yaml's ``serving.engine``:
    seldon-core-microservice, or MLServer (V2; ``--workers``/``--threads`` apply to Seldon)."""
    from cdl_gitlab.serving import local_server

    settings = app.settings
    info, process = local_server.serve(
        settings,
        version,
        port,
        metrics_port,
        workers=workers,
        threads=threads,
        grpc_port=grpc_port,
    )
    click.echo(
        f"serving {info.model} v{info.version} at {info.predict_url} "
        f"(metrics: http://127.0.0.1:{info.metrics_port}/metrics, log: {info.log})"
    )
    if not foreground:
        click.echo("stop it with `cdl deploy stop`")
        return
    click.echo("press Ctrl-C to stop")
    try:
        code = process.wait()
    except KeyboardInterrupt:
        local_server.stop(settings)
        click.echo("stopped")
        return
    local_server.server_file(settings).unlink(missing_ok=True)
    raise local_server.ServeError(
        f"the model server exited with code {code}; last lines of {info.log}:\n"
        f"{local_server.log_tail(Path(info.log))}"
    )


@deploy.command("stop")
@pass_app
def stop(app: AppContext) -> None:
    """Stop the local model server (its whole process group)."""
    from cdl_gitlab.serving import local_server

    info = local_server.stop(app.settings)
    if info is None:
        click.echo("no model server is running")
    else:
        click.echo(f"stopped {info.model} v{info.version} (pid {info.pid}, {info.url})")


def _payload(texts: tuple[str, ...], json_file: Path | None, engine: str) -> Any:
    """The request body: Seldon's ``data.ndarray`` or a V2 inference request (mlserver)."""
    if texts and json_file:
        raise click.UsageError("give texts or --json FILE, not both")
    if json_file:
        try:
            data = json.loads(json_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise click.BadParameter(f"{json_file}: {exc}", param_hint="--json") from exc
        if isinstance(data, dict):
            return data
        return _v2_inputs(data) if engine == "mlserver" else {"data": {"ndarray": data}}
    if not texts:
        raise click.UsageError("give one or more texts, or --json FILE with a request body")
    if engine == "mlserver":
        return _v2_inputs(list(texts))
    return {"data": {"ndarray": list(texts)}}


def _v2_inputs(items: Any) -> dict[str, Any]:
    """A V2 inference request for a JSON list of inputs: strings (BYTES) or pixel arrays."""
    import numpy as np

    values = items if isinstance(items, list) else [items]
    if all(isinstance(item, str) for item in values):
        return {
            "inputs": [
                {"name": "text", "shape": [len(values)], "datatype": "BYTES", "data": values}
            ]
        }
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(f"neither texts nor numbers: {exc}", param_hint="--json") from exc
    return {
        "inputs": [
            {
                "name": "image",
                "shape": list(array.shape),
                "datatype": "FP64",
                "data": array.ravel().tolist(),
            }
        ]
    }


@deploy.command("predict")
@click.argument("texts", nargs=-1)
@click.option(
    "--json",
    "json_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A request body (an object: Seldon's, or V2 for serving.engine mlserver), or a JSON "
    "list of inputs.",
)
@click.option("--url", default=None, help="Server base URL (default: the running local server).")
@click.option("--raw", is_flag=True, help="Print the server's whole JSON answer.")
@pass_app
def predict(
    app: AppContext, texts: tuple[str, ...], json_file: Path | None, url: str | None, raw: bool
) -> None:
    """POST inputs to the model server and print, per input, the class and its probability.

    Speaks the protocol of ``serving.engine``: Seldon's ``/api/v1.0/predictions`` or MLServer's
    V2 ``/v2/models/<name>/infer``."""
    from cdl_gitlab.serving import local_server

    engine = app.settings.config.serving.engine
    payload = _payload(texts, json_file, engine)
    if url is None:
        info = local_server.read_server(app.settings)
        port = info.port if info else app.settings.config.deployment.local_port
        url = f"http://127.0.0.1:{port}"
    if engine == "mlserver":
        endpoint = f"{url.rstrip('/')}/v2/models/{app.settings.config.model.name}/infer"
        status, answer = local_server.post_json(endpoint, payload)
        summarize = _v2_prediction_lines
    else:
        status, answer = local_server.post_json(local_server.predictions_url(url), payload)
        summarize = _prediction_lines
    summary = None if raw or status != 200 else summarize(answer, _shown_inputs(payload))
    click.echo(summary or json.dumps(answer, indent=2))
    if status != 200:
        raise local_server.ServeError(f"the model server answered HTTP {status}")


def _shown_inputs(payload: Any) -> list[str]:
    """The text items of a Seldon or V2 payload, to show beside their predictions."""
    if not isinstance(payload, dict):
        return []
    inputs = payload.get("inputs")
    if isinstance(inputs, list) and inputs and isinstance(inputs[0], dict):
        items = inputs[0].get("data") if inputs[0].get("datatype") == "BYTES" else None
    else:
        data = payload.get("data")
        items = data.get("ndarray") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return []
    return [item if isinstance(item, str) else "" for item in items]


def _lines(
    labels: list[str], rows: list[list[float]], names: list[str], texts: list[str]
) -> list[str]:
    lines = []
    for index, (label, probabilities) in enumerate(zip(labels, rows, strict=False)):
        probability = probabilities[names.index(label)] if label in names else max(probabilities)
        shown = (texts[index] if index < len(texts) else "") or f"item {index}"
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        lines.append(f"{label}  {probability:.4f}  {shown}")
    return lines


def _prediction_lines(answer: Any, texts: list[str]) -> str | None:
    """``<class>  <probability>  <input>`` per item; None when the answer is not a CDL one."""
    try:
        names = answer["data"]["names"]
        rows = answer["data"]["ndarray"]
        labels = answer["meta"]["tags"]["predictions"]
    except (KeyError, TypeError):
        return None
    lines = _lines(labels, rows, names, texts)
    version = answer["meta"]["tags"].get("version")
    lines.append(f"(model {answer['meta']['tags'].get('model')} v{version})")
    return "\n".join(lines)


def _v2_prediction_lines(answer: Any, texts: list[str]) -> str | None:
    """The same lines from a V2 inference response of the CDL runtime."""
    try:
        outputs = {output["name"]: output for output in answer["outputs"]}
        names = answer["parameters"]["classes"]
        flat = outputs["probabilities"]["data"]
        labels = outputs["label"]["data"]
        width = len(names)
        rows = [flat[i * width : (i + 1) * width] for i in range(len(labels))]
    except (KeyError, TypeError, ZeroDivisionError):
        return None
    lines = _lines(labels, rows, names, texts)
    lines.append(f"(model {answer['model_name']} v{answer.get('model_version')})")
    return "\n".join(lines)


def _echo_comparison(comparison: dict[str, Any]) -> None:
    size, latency, acc = comparison["size_bytes"], comparison["latency_ms"], comparison["accuracy"]
    click.echo(
        f"format           {comparison['format']} (from v{comparison['source_version']})\n"
        f"size             {size['original']:,} -> {size['compressed']:,} bytes "
        f"(x{size['ratio']:.3f})\n"
        f"latency p50      {latency['original']['p50']:.3f} -> "
        f"{latency['compressed']['p50']:.3f} ms (x{latency['ratio_p50']:.3f})\n"
        f"test accuracy    {acc['original']:.4f} -> {acc['compressed']:.4f} "
        f"(drop {acc['drop']:+.4f}, allowed {acc['max_drop']:.4f}, {acc['test_items']} items)"
    )


@deploy.command("compress")
@VERSION
@pass_app
def compress(app: AppContext, version: int | None) -> None:
    """Quantize a version, compare it with the original, register it if accuracy holds."""
    from cdl_gitlab.deploy.compression import CompressionRejected, compress_version

    try:
        result = compress_version(app.settings, version)
    except CompressionRejected as exc:
        _echo_comparison(exc.comparison)
        raise
    _echo_comparison(result.comparison)
    if result.version is None:
        source = result.comparison["source_version"]
        click.echo(
            f"the compressed model passed; this registry cannot store its files, so the "
            f"comparison is recorded on v{source} (compression_gate), which stays the version "
            "to deploy"
        )
        return
    click.echo(f"registered the compressed model as v{result.version}")


@deploy.command("select")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the decision as a dotenv file (CDL_DEPLOY_VERSION=...) instead of printing it.",
)
@pass_app
def select(app: AppContext, out: Path | None) -> None:
    """Decide the version to deploy: the compressed one if its gate passed, else the native."""
    from cdl_gitlab.deploy.selection import select_version
    from cdl_gitlab.fsutil import atomic_write_text
    from cdl_gitlab.registry import open_registry

    chosen = select_version(app.settings, open_registry(app.settings))
    if out:
        atomic_write_text(out, chosen.dotenv())
    click.echo(chosen.dotenv(), nl=False)
    click.echo(
        f"deploying {chosen.model} v{chosen.version} ({chosen.variant}; evaluated version "
        f"v{chosen.native_version}, test accuracy {chosen.accuracy:.4f})",
        err=True,
    )


@deploy.command("manifest")
@ENV
@IMAGE
@TAG
@VERSION
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the manifest here instead of printing it.",
)
@pass_app
def manifest(
    app: AppContext,
    environment: str,
    image: str | None,
    tag: str | None,
    version: int | None,
    out: Path | None,
) -> None:
    """Render and validate the manifest of an environment: the SeldonDeployment, or the KServe
    InferenceService for serving.engine mlserver."""
    from cdl_gitlab.deploy.kube import render_for_engine
    from cdl_gitlab.deploy.manifest import resolve_image, serving_memory_of
    from cdl_gitlab.fsutil import atomic_write_text
    from cdl_gitlab.registry import RegistryError, open_registry

    settings = app.settings
    resolved = resolve_image(settings, image, tag)
    measured = None
    try:
        found = open_registry(settings).get_version(settings.config.model.name, version)
        version, measured = found.version, serving_memory_of(found.metadata)
    except RegistryError:
        if settings.config.deployment.memory == "auto":
            raise
    rendered = render_for_engine(
        settings, environment, resolved, model_version=version, serving_memory=measured
    )
    if out:
        atomic_write_text(out, rendered.text)
        click.echo(f"wrote {out} ({rendered.name} in {rendered.namespace}, {rendered.image})")
    else:
        click.echo(rendered.text, nl=False)


def _cluster_registry(app: AppContext) -> Any:
    from cdl_gitlab.registry import open_registry

    settings = app.settings
    if settings.profile != "cluster":
        raise CDLError(
            "apply and rollback deploy to Kubernetes: use the cluster profile "
            "(--profile cluster or CDL_PROFILE=cluster); locally, use `cdl deploy serve`"
        )
    return open_registry(settings)


@deploy.command("apply")
@ENV
@IMAGE
@TAG
@VERSION
@pass_app
def apply(
    app: AppContext, environment: str, image: str | None, tag: str | None, version: int | None
) -> None:
    """Apply the SeldonDeployment (or the KServe InferenceService for serving.engine mlserver)
    with kubectl, wait until it serves, record it."""
    from cdl_gitlab.deploy import kube
    from cdl_gitlab.deploy.manifest import resolve_image

    registry = _cluster_registry(app)
    result = kube.apply(
        app.settings, registry, environment, resolve_image(app.settings, image, tag), version
    )
    for line in result.output:
        click.echo(line)
    click.echo(
        f"deployed {app.settings.config.model.name} v{result.version} to {environment} "
        f"({result.name} in {result.namespace}, {result.image})"
    )


@deploy.command("rollback")
@ENV
@pass_app
def rollback(app: AppContext, environment: str) -> None:
    """Re-deploy the version that was deployed to an environment before the current one."""
    from cdl_gitlab.deploy import kube

    registry = _cluster_registry(app)
    result = kube.rollback(app.settings, registry, environment)
    for line in result.output:
        click.echo(line)
    click.echo(
        f"rolled {environment} back to {app.settings.config.model.name} v{result.version} "
        f"({result.image})"
    )
