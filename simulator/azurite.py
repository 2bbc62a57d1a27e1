"""Own the lifecycle of a local Azurite (Azure Storage emulator) process.

This is the single place that starts and stops Azurite, shared by
``authwatch demo`` and the pytest session fixture, so both behave the same:
free loopback ports (parallel runs never collide), a throw-away data folder
(on disk, so a stop/start keeps data, which the fault tests rely on) and a
guaranteed stop even on exceptions or Ctrl-C (no orphaned node processes).
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

# Azurite's fixed, publicly documented development account (not a secret).
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
HOST = "127.0.0.1"
BIN_ENV = "AUTHWATCH_AZURITE_BIN"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
_START_ATTEMPTS = 3  # fresh ports per attempt; a picked port can be taken before Azurite binds it
_LOG_NAME = "azurite.log"


class AzuriteError(RuntimeError):
    """Azurite is not installed, did not start, or is not running."""


def azurite_binary() -> Path:
    """Return the Azurite executable: $AUTHWATCH_AZURITE_BIN or the npm-installed one."""
    override = os.environ.get(BIN_ENV)
    path = Path(override) if override else PROJECT_ROOT / "node_modules" / ".bin" / "azurite"
    if not path.is_file():
        raise AzuriteError(
            f"Azurite not found at {path}. Run `make install` (it runs `npm install` in "
            f"{PROJECT_ROOT}, which installs the version pinned in package.json) or set {BIN_ENV}."
        )
    return path


def azurite_command(location: Path, blob_port: int, queue_port: int, table_port: int,
                    debug_log: Path | None = None) -> list[str]:
    """Build the Azurite command line (raises AzuriteError if the binary is missing)."""
    cmd = [
        str(azurite_binary()),
        "--silent",               # no access log per request on stdout
        "--location", str(location),
        "--skipApiVersionCheck",  # SDKs may be newer than the emulator
        "--loose",                # ignore headers/params Azurite does not implement
        "--disableTelemetry",     # it sends telemetry by default; we are offline/CI
        "--blobHost", HOST, "--blobPort", str(blob_port),
        "--queueHost", HOST, "--queuePort", str(queue_port),
        "--tableHost", HOST, "--tablePort", str(table_port),
    ]
    if debug_log is not None:
        cmd += ["--debug", str(debug_log)]
    return cmd


def _free_ports() -> tuple[int, int, int]:
    """Let the OS pick three distinct free loopback ports (bound at once so they differ)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(3)]
        for s in socks:
            s.bind((HOST, 0))
        blob, queue, table = (s.getsockname()[1] for s in socks)
        return blob, queue, table


def _answers_http(port: int) -> bool:
    """True if something speaks HTTP on the port (any status, Azurite says 400 here)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=1.0)
    try:
        conn.request("GET", f"/{ACCOUNT_NAME}")
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class Azurite:
    """A local Azurite process; use as a context manager or call start()/stop().

    ``stop()`` only stops the process, keeping ports and data so ``start()``
    resumes with the same endpoints and data. ``close()`` (also run by
    ``__exit__`` and at interpreter exit) stops it and deletes the temporary
    data folder unless ``keep_data`` is set or the caller supplied ``data_dir``.
    """

    def __init__(self, data_dir: str | Path | None = None, *, keep_data: bool = False,
                 debug_log: bool = False, startup_timeout: float = 30.0) -> None:
        self._owns_dir = data_dir is None
        # Absolute: Azurite runs with cwd=data_dir, a relative --location would nest.
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="authwatch-azurite-")).resolve()
        self.keep_data = keep_data
        self.debug_log = debug_log  # verbose per-request log in data_dir/debug.log
        self.startup_timeout = startup_timeout
        self.ports: tuple[int, int, int] | None = None  # (blob, queue, table), fixed after first start
        self._proc: subprocess.Popen[bytes] | None = None
        self._arm_cleanup()

    # -- endpoints -----------------------------------------------------------
    def _endpoint(self, index: int) -> str:
        if self.ports is None:
            raise AzuriteError("Azurite has not been started yet")
        return f"http://{HOST}:{self.ports[index]}/{ACCOUNT_NAME}"

    blob_endpoint = property(lambda self: self._endpoint(0), doc="Blob service URL.")
    queue_endpoint = property(lambda self: self._endpoint(1), doc="Queue service URL.")
    table_endpoint = property(lambda self: self._endpoint(2), doc="Table service URL.")

    @property
    def connection_string(self) -> str:
        """Full connection string accepted by every azure-* SDK's from_connection_string."""
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
                f"BlobEndpoint={self.blob_endpoint};QueueEndpoint={self.queue_endpoint};"
                f"TableEndpoint={self.table_endpoint};")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """PID (= process group id) of the running Azurite, for diagnostics."""
        return self._proc.pid if self.running and self._proc else None

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> Azurite:
        """Start Azurite (no-op if running); on a restart reuse the same ports and data."""
        if self.running:
            return self
        self._arm_cleanup()  # again, in case close() ran before this restart
        azurite_binary()  # fail fast with the `make install` hint
        self.data_dir.mkdir(parents=True, exist_ok=True)
        restart = self.ports is not None
        for attempt in range(1 if restart else _START_ATTEMPTS):
            ports = self.ports or _free_ports()  # a restart must keep its endpoints
            if self._launch(ports):
                self.ports = ports
                return self
        raise AzuriteError(f"Azurite could not bind its ports {ports} after {attempt + 1} "
                           f"attempt(s):\n{self._log_tail()}")

    def _launch(self, ports: tuple[int, int, int]) -> bool:
        """Run Azurite and wait until it answers; False if a port was already in use."""
        debug = self.data_dir / "debug.log" if self.debug_log else None
        cmd = azurite_command(self.data_dir, *ports, debug_log=debug)
        with open(self.data_dir / _LOG_NAME, "ab") as log:  # child keeps its own fd
            log.write(f"\n--- {time.strftime('%H:%M:%S')} starting on {ports}\n".encode())
            log.flush()
            # Own session/process group: Ctrl-C in the terminal reaches only us (we then
            # stop it deliberately), and stop() can signal the whole group at once.
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, cwd=self.data_dir,
                                          start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        pending = list(ports)
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = self._log_tail()
                self._proc = None
                if "EADDRINUSE" in tail:
                    return False
                raise AzuriteError(f"Azurite exited during startup:\n{tail}")
            pending = [p for p in pending if not _answers_http(p)]
            if not pending:
                return True
            time.sleep(0.1)
        self._terminate()
        raise AzuriteError(f"Azurite did not answer on ports {pending} within "
                           f"{self.startup_timeout:.0f}s:\n{self._log_tail()}")

    def _arm_cleanup(self) -> None:
        """Make sure close() runs at interpreter exit even if the caller never calls it."""
        atexit.unregister(self.close)  # no duplicates
        atexit.register(self.close)

    def _terminate(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group (Azurite flushes its databases on it), then SIGKILL.

        self._proc is cleared only once the process is gone, so a second Ctrl-C
        during the wait still leaves the atexit hook something to kill.
        """
        proc = self._proc
        if proc is not None and proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, None)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(wait)
                    break
        self._proc = None

    def stop(self) -> None:
        """Stop the process; ports and data are kept so start() can resume."""
        self._terminate()

    def close(self) -> None:
        """Stop and remove the temporary data folder (unless kept); idempotent."""
        self._terminate()
        atexit.unregister(self.close)
        if self._owns_dir and not self.keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _log_tail(self, size: int = 3000) -> str:
        """Last bytes of the console log (and debug log) for error messages."""
        parts = []
        for path in (self.data_dir / _LOG_NAME, self.data_dir / "debug.log"):
            if path.is_file():
                with open(path, "rb") as f:
                    f.seek(max(0, path.stat().st_size - size))
                    parts.append(f"[{path}]\n" + f.read().decode(errors="replace"))
        return "\n".join(parts) or "(no Azurite log written)"

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()  # returns None: exceptions (incl. KeyboardInterrupt) propagate
