"""A stand-in for ``kubectl``: records argv, stdin and KUBECONFIG, answers like kubectl.

Each call appends one JSON line to ``$FAKE_KUBECTL_LOG``. ``$FAKE_KUBECTL_FAIL=<verb>``
(or ``<verb>:<name>``: only for the JSON object of that name) makes that verb fail, echoing
its stdin to stderr (to check that callers scrub secrets).
``get secret <name>`` finds a Secret applied earlier (in the log) or named in
``$FAKE_KUBECTL_SECRETS`` (comma-separated, the cluster's existing Secrets); ``get deployment``
finds any name (the operator created it).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def secret_exists(name: str, log_path: str) -> bool:
    existing = [s for s in os.environ.get("FAKE_KUBECTL_SECRETS", "").split(",") if s]
    if name in existing:
        return True
    for line in Path(log_path).read_text(encoding="utf-8").splitlines():
        call = json.loads(line)
        if call["argv"][:1] == ["apply"] and call["stdin"].lstrip().startswith("{"):
            applied = json.loads(call["stdin"])
            if applied["kind"] == "Secret" and applied["metadata"]["name"] == name:
                return True
    return False


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
    with open(os.environ["FAKE_KUBECTL_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")
    verb = args[0] if args else ""
    failing = os.environ.get("FAKE_KUBECTL_FAIL", "")
    named = ""
    if stdin.lstrip().startswith("{"):
        named = json.loads(stdin)["metadata"]["name"]
    if failing in (verb, f"{verb}:{named}"):
        sys.stderr.write(f"error: {verb} failed for input: {stdin}\n")
        return 1
    if verb == "apply":
        kind = json.loads(stdin)["kind"] if stdin.lstrip().startswith("{") else "seldondeployment"
        print(f"{kind.lower()}/applied configured")
    elif verb == "get" and args[1] == "secret":
        if secret_exists(args[2], os.environ["FAKE_KUBECTL_LOG"]):
            print(f"secret/{args[2]}")
    elif verb == "get":
        print(f"deployment.apps/{args[2]}")
    elif verb == "rollout":
        print(f'deployment "{args[2].split("/", 1)[1]}" successfully rolled out')
    return 0


if __name__ == "__main__":
    sys.exit(main())
