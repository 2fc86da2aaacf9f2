"""The local STAC API: ``rustac serve`` over an archive, on 127.0.0.1 and a free port.

The items are handed to the server as newline-delimited JSON with absolute ``file://`` asset
hrefs, so ``pystac-client`` searches this server exactly as it searches Planetary Computer or
Earth Search and the loaders read the COGs straight from disk. (Serving the COGs over HTTP
would exercise range requests too, but it adds a second server for no gain in what the
loaders do: GDAL's remote-read path is the same code whichever host answers.)

The server never outlives its owner: ``stop()`` (and leaving the ``with`` block, also on an
exception or a signal handled by the caller) ends its process group; a watchdog in that group
ends it within half a second when the owning process dies without cleaning up (``kill -9``, a
Jupyter kernel that is killed), and the input files are removed as soon as the server has
loaded them, so nothing is left in the temporary folder either way.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from eocube.catalog.archive import Archive, open_archive
from eocube.errors import ConfigError, ServerError

HOST = "127.0.0.1"
#: Seconds between the watchdog's checks that the owning process is alive.
WATCH_INTERVAL = 0.5

# Runs as the server's process group leader: a background loop ends the whole group when the
# owner ($1) is gone, then the shell becomes rustac (exec), so the leader's pid is rustac's.
_WATCHDOG = ('owner=$1; shift; '
             '( while kill -0 "$owner" 2>/dev/null; do sleep {interval}; done; kill -TERM 0 ) '
             '</dev/null >/dev/null 2>&1 & exec "$@"')


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _check_port_free(port: int, host: str = HOST) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise ServerError(f"port {port} on {host} is in use ({e.strerror}); pass port=None "
                              "(or omit --port) to pick a free one") from None


def _rustac_exe() -> str:
    exe = Path(sys.executable).with_name("rustac")
    if exe.exists():
        return str(exe)
    found = shutil.which("rustac")
    if not found:
        raise ServerError("the `rustac` command was not found; install it with "
                          "`pip install rustac`")
    return found


class LocalStacApi:
    """A running ``rustac serve`` over a static archive; use it as a context manager.

    Parameters
    ----------
    archive
        Path of a complete archive (see ``open_archive``) or an ``Archive``.
    port
        TCP port on 127.0.0.1; ``None`` picks a free one.
    timeout
        Seconds to wait for the server to answer before giving up.

    Examples
    --------
    >>> with LocalStacApi("runs/tiny-city") as api:  # doctest: +SKIP
    ...     client = pystac_client.Client.open(api.url)
    """

    def __init__(self, archive: str | os.PathLike[str] | Archive, /, *,
                 port: int | None = None, timeout: float = 60.0) -> None:
        self.archive = archive if isinstance(archive, Archive) else open_archive(archive)
        if port is not None and not (0 < port < 65536):
            raise ConfigError(f"port={port} is not a valid TCP port (1-65535)")
        self._port = port
        self.timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise ServerError("the STAC API is not running; call start() or use `with`")
        return f"http://{HOST}:{self.port}"

    def _write_inputs(self, d: Path) -> list[str]:
        hrefs = []
        for cid in self.archive.collection_ids:
            cpath = d / f"{cid}.collection.json"
            cpath.write_text(json.dumps(self.archive.collection(cid)))
            ipath = d / f"{cid}.items.ndjson"
            with ipath.open("w") as f:
                for it in self.archive.items(cid):
                    f.write(json.dumps(it) + "\n")
            hrefs += [str(cpath), str(ipath)]
        return hrefs

    def start(self) -> LocalStacApi:
        """Start the server and wait until it answers.

        Raises
        ------
        ServerError
            If rustac is missing, the port is taken, or the server does not answer within
            ``timeout`` seconds (three free ports are tried when ``port`` is ``None``).
        """
        if self._proc is not None:
            return self
        try:
            return self._start()
        except BaseException:  # also a signal or Ctrl-C while starting: leave nothing behind
            self.stop()
            raise

    def _start(self) -> LocalStacApi:
        self._workdir = tempfile.TemporaryDirectory(prefix="eocube-stac-")
        hrefs = self._write_inputs(Path(self._workdir.name))
        attempts = 1 if self._port is not None else 3
        last_err = ""
        for _ in range(attempts):
            port = self._port if self._port is not None else free_port()
            if self._port is not None:
                _check_port_free(port)
            log = Path(self._workdir.name) / "server.log"
            cmd = [_rustac_exe(), "serve", "--addr", f"{HOST}:{port}", *hrefs]
            if os.name == "posix":
                cmd = ["/bin/sh", "-c", _WATCHDOG.format(interval=WATCH_INTERVAL), "eocube-serve",
                       str(os.getpid()), *cmd]
            with log.open("wb") as logf:
                self._proc = subprocess.Popen(
                    cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True)
            self.port = port
            if self._wait_ready(log):
                # rustac has loaded its inputs into memory: a killed owner leaves no files
                self._remove_workdir()
                return self
            last_err = log.read_text(errors="replace")[-2000:]
            self._end_group()  # keep the inputs for the next attempt
        raise ServerError(
            f"rustac serve did not start on {HOST}: {last_err.strip() or 'no output'}")

    def _wait_ready(self, log: Path) -> bool:
        deadline = time.monotonic() + self.timeout
        assert self._proc is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/", timeout=2) as r:
                    if r.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        return False

    def stop(self) -> None:
        """Stop the server and its process group (watchdog included); safe to call twice."""
        self._end_group()
        self._remove_workdir()
        self.port = None

    def _end_group(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            # the group even when its leader has exited: the watchdog may still be in it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def _remove_workdir(self) -> None:
        if self._workdir is not None:
            with contextlib.suppress(OSError):
                self._workdir.cleanup()
            self._workdir = None

    @property
    def workdir(self) -> str | None:
        """The temporary folder of the server's inputs while it starts (``None`` after)."""
        return None if self._workdir is None else self._workdir.name

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def __enter__(self) -> LocalStacApi:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __del__(self) -> None:  # a forgotten server must not outlive its owner
        with contextlib.suppress(Exception):
            self.stop()


def serve(archive: str | os.PathLike[str], /, *, port: int | None = None) -> LocalStacApi:
    """Start a ``LocalStacApi`` over ``archive`` (use it as a context manager)."""
    return LocalStacApi(archive, port=port)
