"""A stand-in for ``kubectl``: records argv, stdin and KUBECONFIG, answers like kubectl.

Each call appends one JSON line to ``$FAKE_KUBECTL_LOG``. ``$FAKE_KUBECTL_FAIL=<verb>``
makes that verb fail, echoing its stdin to stderr (to check that callers scrub secrets).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


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
    if os.environ.get("FAKE_KUBECTL_FAIL") == verb:
        sys.stderr.write(f"error: {verb} failed for input: {stdin}\n")
        return 1
    if verb == "apply":
        kind = json.loads(stdin)["kind"] if stdin.lstrip().startswith("{") else "seldondeployment"
        print(f"{kind.lower()}/applied configured")
    elif verb == "get":
        print(f"deployment.apps/{args[2]}")
    elif verb == "rollout":
        print(f'deployment "{args[2].split("/", 1)[1]}" successfully rolled out')
    return 0


if __name__ == "__main__":
    sys.exit(main())
