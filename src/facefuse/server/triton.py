"""Start and stop the embedded tritonserver from the nvidia-pytriton wheel.

The wheel ships Triton 2.51 with the Python backend and one backend stub per Python
version. The stub for the running Python is copied next to the backend library, and
the server is started with this virtual environment's bin/ first on PATH: the stub's
embedded interpreter resolves `python3` there and so sees the environment's
site-packages (numpy < 2, facefuse) rather than the base interpreter's.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from facefuse.settings import Settings, get_settings

PR_SET_PDEATHSIG = 1  # linux/prctl.h


class TritonStartError(RuntimeError):
    """tritonserver did not become ready; the message carries its log tail."""


def pytriton_server_dir() -> Path:
    import pytriton

    return Path(pytriton.__file__).resolve().parent / "tritonserver"


def prepare_backends(target: Path) -> Path:
    """<target>/python holds the Python backend plus the stub for this interpreter."""
    source = pytriton_server_dir()
    stub = source / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}" / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonStartError(f"nvidia-pytriton has no Python backend stub for Python {sys.version.split()[0]} ({stub})")
    python_dir = target / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for item in (source / "backends" / "python").iterdir():
        if item.is_file():
            _copy_if_changed(item, python_dir / item.name)
    _copy_if_changed(stub, python_dir / stub.name)
    return target


def _copy_if_changed(src: Path, dst: Path) -> None:
    if not dst.exists() or dst.stat().st_size != src.stat().st_size or dst.stat().st_mtime < src.stat().st_mtime:
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)


# glibc returns freed memory of large blocks (a poster, a face crop) to the kernel and
# faults it back in on the next request: measured 860 page faults per poster in the
# postprocess stub and 170 in tritonserver on the 2-core box, about 4 ms of CPU per
# poster. Keeping up to 256 MiB free on the heap and serving blocks below 32 MiB from it
# brings that to about zero. (Tunables are read at process start; children inherit.)
MALLOC_TUNABLES = "glibc.malloc.trim_threshold=268435456:glibc.malloc.mmap_threshold=33554432"


def with_malloc_tunables(env: dict[str, str]) -> dict[str, str]:
    """env with MALLOC_TUNABLES; tunables the caller already set come last and win."""
    env = dict(env)
    env["GLIBC_TUNABLES"] = ":".join(t for t in (MALLOC_TUNABLES, env.get("GLIBC_TUNABLES", "")) if t)
    return env


def server_environment() -> dict[str, str]:
    env = with_malloc_tunables(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    libs = [sysconfig.get_config_var("LIBDIR") or "", str(pytriton_server_dir().parent.parent / "nvidia_pytriton.libs")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([p for p in libs if p] + [env.get("LD_LIBRARY_PATH", "")])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


# Loaded here, not in the forked child: find_library runs a subprocess, which must not
# happen between fork and exec in a process that has threads.
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _die_with_parent() -> None:
    """In the child before exec: the kernel sends SIGTERM if the starting process dies
    (even by SIGKILL), so no orphaned tritonserver keeps its ports and memory."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class TritonServer:
    """A running tritonserver; use as a context manager (`with EmbeddedTriton(...) as t`)."""

    grpc_port: int
    http_port: int
    metrics_port: int
    process: subprocess.Popen
    log_path: Path
    host: str = "127.0.0.1"
    admin_key: str | None = None

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def command(backends: Path, grpc_port: int, http_port: int, metrics_port: int,
            admin_key: str | None, repositories: list[Path]) -> list[str]:
    cmd = [
        str(pytriton_server_dir() / "bin" / "tritonserver"),
        *[f"--model-repository={r}" for r in repositories],
        f"--backend-directory={backends}",
        "--model-control-mode=explicit",
        "--load-model=*",
        "--strict-model-config=true",
        f"--grpc-port={grpc_port}",
        f"--http-port={http_port}",
        f"--metrics-port={metrics_port}",
        "--allow-metrics=true",
        "--log-verbose=0",
        "--exit-on-error=true",
    ]
    if admin_key:
        cmd.append(f"--grpc-restricted-protocol=model-repository:admin-key={admin_key}")
        cmd.append(f"--http-restricted-api=model-repository:admin-key={admin_key}")
    return cmd


def trace_flags(otlp_traces_url: str | None, service_name: str = "facefuse-triton") -> list[str]:
    """Triton's OpenTelemetry tracing (Triton >= 24.01), exporting OTLP/HTTP to the URL.

    rate=0: only requests that arrive with a W3C trace context (the gateway's sampled
    calls) are traced, and their ensemble, model and compute spans join that trace.
    Nothing when the URL is None. The Helm chart passes the same flags (a test compares).
    """
    if not otlp_traces_url:
        return []
    settings = ["mode=opentelemetry", "level=TIMESTAMPS", "rate=0", "count=-1",
                f"opentelemetry,url={otlp_traces_url}", f"opentelemetry,resource=service.name={service_name}"]
    return [flag for setting in settings for flag in ("--trace-config", setting)]


@contextlib.contextmanager
def embedded_triton(settings: Settings | None = None, ports: tuple[int, int, int] | None = None,
                    admin_key: str | None = None, log_path: Path | None = None):
    """Start tritonserver on the built repository and wait until every model is ready.

    ports: (grpc, http, metrics); None picks free ones. Stops the server on exit.
    """
    settings = settings or get_settings()
    run_dir = settings.var_dir / "triton"
    backends = prepare_backends(run_dir / "backends")
    grpc_port, http_port, metrics_port = ports or (free_port(), free_port(), free_port())
    admin_key = admin_key if admin_key is not None else settings.triton_admin_key
    log_path = log_path or run_dir / f"tritonserver-{grpc_port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    repositories = [settings.model_repository_dir, settings.ensembles_dir]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command(backends, grpc_port, http_port, metrics_port, admin_key, repositories)
            + trace_flags(settings.triton_otlp_traces_url),
            stdout=log, stderr=subprocess.STDOUT, env=server_environment(), start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    server = TritonServer(grpc_port, http_port, metrics_port, process, log_path, admin_key=admin_key)
    try:
        deadline = time.monotonic() + settings.triton_start_timeout_s
        while not server.ready():
            if process.poll() is not None:
                raise TritonStartError(f"tritonserver exited with code {process.returncode}:\n{server.log_tail()}")
            if time.monotonic() > deadline:
                raise TritonStartError(f"tritonserver not ready after {settings.triton_start_timeout_s:.0f} s:\n{server.log_tail()}")
            time.sleep(0.25)
        yield server
    finally:
        server.stop()
