"""Start and stop the embedded tritonserver from the nvidia-pytriton wheel.

The wheel ships Triton 2.51 with the Python backend and one backend stub per Python
version. The stub for the running Python is copied next to the backend library, and
the server is started with this virtual environment's bin/ first on PATH: the stub's
embedded interpreter resolves `python3` there and so sees the environment's
site-packages (numpy < 2, facefuse) rather than the base interpreter's.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from facefuse.fileperms import share
from facefuse.settings import Settings, get_settings


class TritonStartError(RuntimeError):
    """tritonserver was not started (a stale repository, no unprivileged user, ...) or did
    not become ready; the message says why (its log tail where it ran)."""


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

# OpenCV runs its parallel loops (resize, warps, blurs) on a thread per core by default.
# A stage's instances are already several workers per core, so those threads only
# oversubscribe the cores: Triton's CPU per poster over the baseline's, 7 alternating
# bench runs each on the 2-core box, median 1.19x with them, 1.16x without
# (docs/running/benchmarks.md#opencv-one-thread). Parallelism comes from instances, as
# ONNX Runtime's one intra-op thread per session already assumes.
OPENCV_THREADS = "1"


def with_worker_tunables(env: dict[str, str]) -> dict[str, str]:
    """env with MALLOC_TUNABLES (the caller's own tunables come last and win) and OpenCV on
    one thread per process (unless the caller set its own count)."""
    env = dict(env)
    env["GLIBC_TUNABLES"] = ":".join(t for t in (MALLOC_TUNABLES, env.get("GLIBC_TUNABLES", "")) if t)
    env.setdefault("OPENCV_FOR_THREADS_NUM", OPENCV_THREADS)
    return env


# Settings that hold secrets: the server and the Python code it runs never need them.
_SECRET_VARIABLE = re.compile(r"^FACEFUSE_.*(KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL)", re.IGNORECASE)


def server_environment() -> dict[str, str]:
    env = {k: v for k, v in with_worker_tunables(os.environ).items() if not _SECRET_VARIABLE.match(k)}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    libs = [sysconfig.get_config_var("LIBDIR") or "", str(pytriton_server_dir().parent.parent / "nvidia_pytriton.libs")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([p for p in libs if p] + [env.get("LD_LIBRARY_PATH", "")])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def has_private_shm(pid: int) -> bool:
    """Whether the process at pid sees its own /dev/shm (see facefuse.server.launch)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt") and \
            os.stat(f"/proc/{pid}/root/dev/shm").st_dev != os.stat(str(SHM_DIR)).st_dev
    except OSError:
        return False


# ---- what only the gateway (and an operator) may reach ---------------------------------
# Triton API groups (2.51: RESTRICTED_CATEGORY_NAMES in src/restricted_features.h). Each
# group takes one key, and a flag per key may be given (a group in one flag only):
# - the admin key opens what changes the server (load code, read its memory, its logs);
# - the gateway key opens inference and what callers of it read (metadata, config,
#   statistics), so a local user cannot skip the gateway's auth, quotas and option checks.
# The gateway holds only the gateway key: a compromised gateway cannot load models.
# Health stays open for probes.
RESTRICTED_APIS = ("model-repository", "shared-memory", "logging", "trace")
GATEWAY_APIS = ("inference", "metadata", "model-config", "statistics")
ADMIN_KEY_HEADER = "admin-key"
GATEWAY_KEY_HEADER = "gateway-key"
# Triton prefixes the header of a restricted gRPC protocol (kRestrictedProtocolHeaderTemplate).
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"
GRPC_ADMIN_KEY_HEADER = f"{GRPC_HEADER_PREFIX}{ADMIN_KEY_HEADER}"
GRPC_GATEWAY_KEY_HEADER = f"{GRPC_HEADER_PREFIX}{GATEWAY_KEY_HEADER}"


def restriction_flags(admin_key: str, gateway_key: str) -> list[str]:
    """`<group>,<group>:<header>=<value>` per key; each key closes both protocols."""
    flags = []
    for groups, header, key in ((RESTRICTED_APIS, ADMIN_KEY_HEADER, admin_key),
                                (GATEWAY_APIS, GATEWAY_KEY_HEADER, gateway_key)):
        flags += [f"--grpc-restricted-protocol={','.join(groups)}:{header}={key}",
                  f"--http-restricted-api={','.join(groups)}:{header}={key}"]
    return flags


def gateway_grpc_headers(gateway_key: str | None) -> dict[str, str]:
    """Headers a Triton caller sends so that its inference calls are let through."""
    return {GRPC_GATEWAY_KEY_HEADER: gateway_key} if gateway_key else {}


def configured_gateway_key(settings: Settings) -> str | None:
    return settings.triton_gateway_key.get_secret_value() if settings.triton_gateway_key else None


# ---- Python-backend shared memory ---------------------------------------------------
# Each stub talks to tritonserver through a region in /dev/shm holding request and
# response tensors (photos, posters). Every server gets its own region prefix, so its
# regions can be removed when it stops however it stops, and leftovers of a dead one
# at the next start, without touching regions of other servers on the machine.
SHM_DIR = Path("/dev/shm")
SHM_PREFIX_ROOT = "facefuse_shm_"


def new_shm_prefix() -> str:
    """facefuse_shm_<pid of the starting process>_<random>_: the pid says whose it was."""
    return f"{SHM_PREFIX_ROOT}{os.getpid()}_{secrets.token_hex(4)}_"


def shm_regions(prefix: str = SHM_PREFIX_ROOT, shm_dir: Path | None = None) -> list[Path]:
    try:
        return sorted(p for p in (shm_dir or SHM_DIR).iterdir() if p.name.startswith(prefix))
    except OSError:
        return []


def remove_shm_regions(prefix: str) -> int:
    removed = 0
    for region in shm_regions(prefix):
        with contextlib.suppress(FileNotFoundError):
            region.unlink()
            removed += 1
    return removed


def _mapped_shm_names() -> set[str]:
    """Names in /dev/shm some live process has mapped (a live server and its stubs do)."""
    names = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        with contextlib.suppress(OSError):
            for line in maps.read_text().splitlines():
                if "/dev/shm/" in line:
                    names.add(line.rsplit("/dev/shm/", 1)[1].split(" ")[0])
    return names


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphaned_shm_regions() -> int:
    """Remove facefuse regions left by servers that died uncleanly: only those whose
    starting process is gone and that no live process maps."""
    mapped = _mapped_shm_names()
    removed = 0
    for region in shm_regions():
        owner = region.name[len(SHM_PREFIX_ROOT):].split("_", 1)[0]
        if region.name in mapped:
            continue  # a live server (or its stub) uses it
        if owner.isdigit() and (int(owner) == os.getpid() or _pid_alive(int(owner))):
            continue  # its starter still runs and removes it when its server stops
        with contextlib.suppress(FileNotFoundError):
            region.unlink()
            removed += 1
    return removed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Endpoints:
    """Where tritonserver listens: addresses from settings (loopback by default), ports."""

    grpc_address: str
    grpc_port: int
    http_address: str
    http_port: int
    metrics_address: str
    metrics_port: int

    @classmethod
    def from_settings(cls, settings: Settings, ports: tuple[int, int, int] | None = None) -> "Endpoints":
        grpc_port, http_port, metrics_port = ports or (free_port(), free_port(), free_port())
        return cls(settings.triton_grpc_address, grpc_port, settings.triton_http_address, http_port,
                   settings.triton_metrics_address, metrics_port)


def _connect_host(address: str) -> str:
    """Where a local client reaches a server bound to `address` (a wildcard: loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(address, address)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class TritonServer:
    """A running tritonserver; use as a context manager (`with EmbeddedTriton(...) as t`)."""

    endpoints: Endpoints
    process: subprocess.Popen
    log_path: Path
    admin_key: str
    shm_prefix: str
    gateway_key: str = ""
    admin_key_generated: bool = False
    private_shm: bool = False  # its own /dev/shm in a mount namespace (see facefuse.server.launch)
    killed: bool = field(default=False, init=False)  # a stop needed SIGKILL

    @property
    def grpc_port(self) -> int:
        return self.endpoints.grpc_port

    @property
    def http_port(self) -> int:
        return self.endpoints.http_port

    @property
    def metrics_port(self) -> int:
        return self.endpoints.metrics_port

    @property
    def grpc_url(self) -> str:
        return _host_port(_connect_host(self.endpoints.grpc_address), self.grpc_port)

    @property
    def http_url(self) -> str:
        return f"http://{_host_port(_connect_host(self.endpoints.http_address), self.http_port)}"

    @property
    def metrics_url(self) -> str:
        return f"http://{_host_port(_connect_host(self.endpoints.metrics_address), self.metrics_port)}/metrics"

    @property
    def admin_grpc_headers(self) -> dict[str, str]:
        """Headers that open the restricted gRPC APIs (repository, logging, shared memory, trace)."""
        return {GRPC_ADMIN_KEY_HEADER: self.admin_key}

    @property
    def admin_http_headers(self) -> dict[str, str]:
        return {ADMIN_KEY_HEADER: self.admin_key}

    @property
    def gateway_grpc_headers(self) -> dict[str, str]:
        """Headers that open inference, metadata, model config and statistics (gRPC)."""
        return gateway_grpc_headers(self.gateway_key)

    @property
    def gateway_http_headers(self) -> dict[str, str]:
        return {GATEWAY_KEY_HEADER: self.gateway_key}

    def client(self):
        """A sync gRPC client that sends the gateway key with every call."""
        from facefuse.triton_client import keyed_client

        return keyed_client(self.grpc_url, self.gateway_key)

    def listening(self) -> str:
        """Where each server really listens (bind address:port), for `serve` to print."""
        e = self.endpoints
        return (f"gRPC {_host_port(e.grpc_address, e.grpc_port)}, HTTP {_host_port(e.http_address, e.http_port)}, "
                f"metrics {_host_port(e.metrics_address, e.metrics_port)}")

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
        """SIGTERM, then SIGKILL to the whole process group after timeout_s; then the
        backend stubs (same group) are gone too and this server's shared memory removed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.killed = True
                _kill_group(self.process.pid)
                self.process.wait()
        self.reap()

    def reap(self) -> None:
        """After tritonserver exited (or crashed): no stub outlives it, no region stays."""
        _kill_group(self.process.pid)
        remove_shm_regions(self.shm_prefix)

    @property
    def shm_dir(self) -> Path:
        """/dev/shm as this server sees it: its own when it has a private one."""
        return Path(f"/proc/{self.process.pid}/root/dev/shm") if self.private_shm else SHM_DIR

    def regions(self) -> list[Path]:
        """This server's Python-backend shared-memory regions, wherever they are."""
        return shm_regions(self.shm_prefix, self.shm_dir)

    def make_regions_private(self) -> None:
        """The backend creates its regions 0644 whatever the umask: make them 0600."""
        for region in self.regions():
            with contextlib.suppress(OSError):
                region.chmod(0o600)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group: tritonserver and its stubs."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(stat.parent.name))
    return members


def _kill_group(pgid: int, timeout_s: float = 5.0) -> None:
    """SIGKILL every process of the group and wait until they are gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)


def command(backends: Path, endpoints: Endpoints, admin_key: str, gateway_key: str, shm_prefix: str,
            repositories: list[Path]) -> list[str]:
    """tritonserver's arguments; the keys are placeholders (`secret_args`) in practice."""
    e = endpoints
    return [
        str(pytriton_server_dir() / "bin" / "tritonserver"),
        *[f"--model-repository={r}" for r in repositories],
        f"--backend-directory={backends}",
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        "--model-control-mode=explicit",
        "--load-model=*",
        "--strict-model-config=true",
        f"--grpc-address={e.grpc_address}",
        f"--grpc-port={e.grpc_port}",
        f"--http-address={e.http_address}",
        f"--http-port={e.http_port}",
        f"--metrics-address={e.metrics_address}",
        f"--metrics-port={e.metrics_port}",
        "--allow-metrics=true",
        "--log-verbose=0",
        "--exit-on-error=true",
        *restriction_flags(admin_key, gateway_key),
    ]


# Where the keys wait for tritonserver (secret_args.c fills them in and wipes these).
ADMIN_KEY_VARIABLE = "FACEFUSE_SERVER_ADMIN_KEY"
GATEWAY_KEY_VARIABLE = "FACEFUSE_SERVER_GATEWAY_KEY"
# Earlier starts' logs kept beside the current one (tritonserver-PORT.log.1 is the last).
KEPT_LOGS = 5


def rotate_logs(log_path: Path, keep: int = KEPT_LOGS) -> None:
    """log -> log.1 -> ... -> log.<keep>: a start that failed keeps its log for the next."""
    for n in range(keep - 1, 0, -1):
        older = log_path.with_name(f"{log_path.name}.{n}")
        if older.exists():
            os.replace(older, log_path.with_name(f"{log_path.name}.{n + 1}"))
    if log_path.exists():
        os.replace(log_path, log_path.with_name(f"{log_path.name}.1"))


def server_user(settings: Settings) -> pwd.struct_passwd | None:
    """Who tritonserver runs as: FACEFUSE_TRITON_USER when this process is root (created
    as a system user on first use), else this process's own user (None)."""
    if os.geteuid() != 0 or not settings.triton_user:
        return None
    try:
        return pwd.getpwnam(settings.triton_user)
    except KeyError:
        pass
    result = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                             "--shell", "/usr/sbin/nologin", settings.triton_user], capture_output=True, text=True)
    try:
        return pwd.getpwnam(settings.triton_user)
    except KeyError:
        raise TritonStartError(
            f"tritonserver must not run as root, and user {settings.triton_user!r} (FACEFUSE_TRITON_USER) does not "
            f"exist and could not be created: {result.stderr.strip() or result.returncode}; create it, or name an "
            "existing unprivileged user") from None


def readable_paths(settings: Settings, backends: Path, preload: Path) -> list[Path]:
    """What tritonserver and its Python stubs read: made reachable for its user."""
    paths = [Path(sys.base_prefix), Path(sys.prefix), Path(sysconfig.get_config_var("LIBDIR") or sys.base_prefix),
             pytriton_server_dir(), Path(__file__).resolve().parents[2], backends, preload.parent,
             settings.model_repository_dir, settings.ensembles_dir, settings.templates_path]
    if os.environ.get("FACEFUSE_TEMPLATE_DIR"):  # read by the stages themselves (server/adapter.py)
        paths.append(Path(os.environ["FACEFUSE_TEMPLATE_DIR"]))
    return paths


def start_triton(settings: Settings, endpoints: Endpoints, admin_key: str | None = None,
                 log_path: Path | None = None, gateway_key: str | None = None) -> TritonServer:
    """Launch tritonserver (not waiting for it); a key None: the configured one, else a
    new random key (the restricted APIs are never open).

    The keys travel in the environment of the launch (readable by this user and root
    only), never in an argument (facefuse.server.secret_args). The launch is a plain
    exec of facefuse.server.launch, safe from a process with gRPC threads; it gives
    the server its own /dev/shm and, when this process is root, an unprivileged user.
    """
    from facefuse.server.launch import PRELOAD_VARIABLE
    from facefuse.server.secret_args import SecretArgsUnavailable, build_library, secret_placeholder
    from facefuse.server.stage_settings import stale_stage_parameters

    repositories = [settings.model_repository_dir, settings.ensembles_dir]
    stale = stale_stage_parameters(settings, repositories)
    if stale:
        raise TritonStartError("the model repository's configs were written with other settings than the ones in "
                               "force, or by an older facefuse; run `facefuse models build` (a no-op for the models) "
                               "to write them again: "
                               + "; ".join(stale))
    run_dir = settings.var_dir / "triton"
    backends = prepare_backends(run_dir / "backends")
    try:
        preload = build_library(run_dir / "lib")
    except SecretArgsUnavailable as exc:
        raise TritonStartError(str(exc)) from None
    user = server_user(settings)
    configured = settings.triton_admin_key.get_secret_value() if settings.triton_admin_key else None
    key = admin_key or configured or secrets.token_urlsafe(24)
    gateway_key = gateway_key or configured_gateway_key(settings) or secrets.token_urlsafe(24)
    log_path = log_path or run_dir / f"tritonserver-{endpoints.grpc_port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    rotate_logs(log_path)
    remove_orphaned_shm_regions()
    shm_prefix = new_shm_prefix()
    if user is not None:  # built before files were shared with the server's user (facefuse.fileperms)
        for path in (*repositories, settings.templates_path):
            share(path)
    server_args = command(backends, endpoints, secret_placeholder(ADMIN_KEY_VARIABLE),
                          secret_placeholder(GATEWAY_KEY_VARIABLE), shm_prefix, repositories)
    launch = [sys.executable, "-m", "facefuse.server.launch", "--parent-pid", str(os.getpid())]
    if user is not None:
        launch += ["--user", user.pw_name, *[f"--expose={p}" for p in readable_paths(settings, backends, preload)]]
    env = {**server_environment(), ADMIN_KEY_VARIABLE: key, GATEWAY_KEY_VARIABLE: gateway_key, PRELOAD_VARIABLE: str(preload)}
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as log:
        process = subprocess.Popen(
            [*launch, "--", *server_args, *trace_flags(settings.triton_otlp_traces_url)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        )
    return TritonServer(endpoints, process, log_path, key, shm_prefix, gateway_key,
                        admin_key_generated=not (admin_key or configured))


def wait_until_ready(server: TritonServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not server.ready():
        if server.process.poll() is not None:
            server.reap()
            raise TritonStartError(f"tritonserver {exit_description(server.process.returncode)} before it was ready "
                                   f"(log {server.log_path}):\n{server.log_tail()}")
        if time.monotonic() > deadline:
            server.stop()
            raise TritonStartError(f"tritonserver not ready after {timeout_s:.0f} s (log {server.log_path}):\n"
                                   f"{server.log_tail()}")
        time.sleep(0.25)
    server.private_shm = has_private_shm(server.process.pid)
    server.make_regions_private()


def exit_description(returncode: int | None) -> str:
    """'was killed by SIGKILL' / 'exited with code 1'."""
    if returncode is not None and returncode < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


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
    server = start_triton(settings, Endpoints.from_settings(settings, ports), admin_key, log_path)
    try:
        wait_until_ready(server, settings.triton_start_timeout_s)
        yield server
    finally:
        server.stop()
