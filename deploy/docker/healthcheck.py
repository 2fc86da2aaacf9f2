#!/usr/bin/env python3
"""Docker HEALTHCHECK of the eocube image (installed as /usr/local/bin/eocube-healthcheck).

Healthy (exit 0) when a Dask scheduler or worker in this container answers ``ok`` on
``http://127.0.0.1:<port>/health`` for a port of ``EOCUBE_HEALTH_PORTS`` (default
``"8787 8788"``: the scheduler's and the worker's dashboard as the manifests set them).
Unhealthy (exit 1) when such a port answers anything else or hangs. When nothing listens on
these ports (a container running ``eocube run`` or a shell), it checks the software instead:
eocube and torch import, and where an NVIDIA device is exposed to the container
(``/dev/nvidia0`` …) torch must see CUDA.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path


def dask_health(port: int, *, timeout: float = 5.0) -> bool | None:
    """True: answers ok; False: answers otherwise or hangs; None: nothing listens."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=timeout) as r:
            return r.status == 200 and r.read().strip() == b"ok"
    except urllib.error.HTTPError:
        return False
    except urllib.error.URLError as e:
        return None if isinstance(e.reason, ConnectionRefusedError) else False
    except ConnectionRefusedError:
        return None
    except OSError:  # timeout, reset
        return False


def software_ok(dev: Path) -> tuple[bool, str]:
    try:
        import torch

        import eocube  # noqa: F401
    except Exception as e:  # any import failure makes the image unusable
        return False, f"import failed: {type(e).__name__}: {e}"
    if any(dev.glob("nvidia[0-9]*")) and not torch.cuda.is_available():
        return False, "an NVIDIA device is exposed but torch sees no CUDA (driver/runtime?)"
    return True, f"eocube and torch {torch.__version__} import; CUDA {torch.cuda.is_available()}"


def main() -> int:
    ports = [int(p) for p in os.environ.get("EOCUBE_HEALTH_PORTS", "8787 8788").split()]
    answers = {p: dask_health(p) for p in ports}
    if any(a is True for a in answers.values()):
        print("dask /health ok on", [p for p, a in answers.items() if a])
        return 0
    if any(a is False for a in answers.values()):
        print("dask /health not ok on", [p for p, a in answers.items() if a is False])
        return 1
    ok, why = software_ok(Path(os.environ.get("EOCUBE_HEALTH_DEV", "/dev")))
    print(why)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
