"""A stand-in for ``kubectl``: records argv, stdin and KUBECONFIG, answers like kubectl.

Each call appends one JSON line to ``$FAKE_KUBECTL_LOG``. ``$FAKE_KUBECTL_FAIL=<verb>``
(or ``<verb>:<name>``: only for the JSON object of that name) makes that verb fail, echoing
its stdin to stderr (to check that callers scrub secrets).
``get secret <name>`` finds a Secret applied earlier (in the log) or named in
``$FAKE_KUBECTL_SECRETS`` (comma-separated, the cluster's existing Secrets); ``get deployment``
finds any name (the operator created it).

Custom resources need their CRD, as on a real API server: ``$FAKE_KUBECTL_CRDS``
(comma-separated kinds, default ``SeldonDeployment``) lists the installed ones; applying any
other kind fails with kubectl's "no matches for kind" error. ``wait --for=condition=Ready
inferenceservice/<name>`` succeeds for an InferenceService applied earlier (KServe made it
Ready), fails with NotFound for one never applied, and times out as kubectl does for the names
in ``$FAKE_KUBECTL_NOT_READY``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml

BUILTIN_KINDS = {"Secret"}
GROUPS = {
    "SeldonDeployment": "machinelearning.seldon.io/v1",
    "InferenceService": "serving.kserve.io/v1beta1",
}


def parse(stdin: str) -> dict:
    """The one object of ``kubectl apply -f -`` (JSON or YAML)."""
    return json.loads(stdin) if stdin.lstrip().startswith("{") else yaml.safe_load(stdin)


def applied_objects(log_path: str) -> list[dict]:
    objects = []
    for line in Path(log_path).read_text(encoding="utf-8").splitlines():
        call = json.loads(line)
        if call["argv"][:1] == ["apply"] and call.get("applied"):
            objects.append(parse(call["stdin"]))
    return objects


def secret_exists(name: str, log_path: str) -> bool:
    existing = [s for s in os.environ.get("FAKE_KUBECTL_SECRETS", "").split(",") if s]
    if name in existing:
        return True
    return any(
        o["kind"] == "Secret" and o["metadata"]["name"] == name for o in applied_objects(log_path)
    )


def main() -> int:
    args = sys.argv[1:]
    stdin = "" if sys.stdin.isatty() else sys.stdin.read()
    kubeconfig = os.environ.get("KUBECONFIG", "")
    record = {
        "argv": args,
        "stdin": stdin,
        "kubeconfig": kubeconfig,
        "kubeconfig_text": Path(kubeconfig).read_text() if Path(kubeconfig).is_file() else None,
        "kubeconfig_mode": oct(Path(kubeconfig).stat().st_mode & 0o777)
        if Path(kubeconfig).is_file()
        else None,
    }
    log_path = os.environ["FAKE_KUBECTL_LOG"]
    verb = args[0] if args else ""
    failing = os.environ.get("FAKE_KUBECTL_FAIL", "")
    document = parse(stdin) if verb == "apply" else {}
    named = document.get("metadata", {}).get("name", "")
    kind = document.get("kind", "")
    crds = os.environ.get("FAKE_KUBECTL_CRDS", "SeldonDeployment").split(",")
    error = ""
    if failing in (verb, f"{verb}:{named}"):
        error = f"error: {verb} failed for input: {stdin}"
    elif verb == "apply" and kind not in BUILTIN_KINDS and kind not in crds:
        error = (
            f'error: resource mapping not found for name: "{named}" namespace: '
            f'"{document["metadata"].get("namespace", "")}" from "STDIN": no matches for kind '
            f'"{kind}" in version "{document.get("apiVersion", GROUPS.get(kind, ""))}"\n'
            "ensure CRDs are installed first"
        )
    record["applied"] = verb == "apply" and not error
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")
    if error:
        sys.stderr.write(error + "\n")
        return 1
    if verb == "apply":
        print(f"{kind.lower()}/{named} configured")
    elif verb == "wait":
        return wait(args, log_path)
    elif verb == "get" and args[1] == "secret":
        if secret_exists(args[2], os.environ["FAKE_KUBECTL_LOG"]):
            print(f"secret/{args[2]}")
    elif verb == "get":
        print(f"deployment.apps/{args[2]}")
    elif verb == "rollout":
        print(f'deployment "{args[2].split("/", 1)[1]}" successfully rolled out')
    return 0


def wait(args: list[str], log_path: str) -> int:
    """``kubectl wait --for=condition=Ready inferenceservice/<name> -n <ns> --timeout=<t>``."""
    [target] = [a for a in args[1:] if "/" in a and not a.startswith("--")]
    resource, name = target.split("/", 1)
    namespace = args[args.index("-n") + 1]
    if "--for=condition=Ready" not in args or resource != "inferenceservice":
        sys.stderr.write(f"error: the fake waits only for Ready inferenceservices: {args}\n")
        return 1
    if not any(a.startswith("--timeout=") and a.endswith("s") for a in args):
        sys.stderr.write("error: no --timeout=<seconds>s\n")
        return 1
    exists = any(
        o["kind"] == "InferenceService"
        and o["metadata"]["name"] == name
        and o["metadata"]["namespace"] == namespace
        for o in applied_objects(log_path)
    )
    if not exists:
        sys.stderr.write(
            "Error from server (NotFound): inferenceservices.serving.kserve.io "
            f'"{name}" not found\n'
        )
        return 1
    if name in os.environ.get("FAKE_KUBECTL_NOT_READY", "").split(","):
        sys.stderr.write(
            f"error: timed out waiting for the condition on inferenceservices/{name}\n"
        )
        return 1
    print(f"inferenceservice.serving.kserve.io/{name} condition met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
