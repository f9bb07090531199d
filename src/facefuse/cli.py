"""`facefuse`: one CLI for every job (models, templates, serve, fuse, demo, gateway,
bench, loadtest, capacity)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from facefuse import contract
from facefuse.settings import get_settings

app = typer.Typer(help="Face-fusion serving on NVIDIA Triton.", no_args_is_help=True, pretty_exceptions_enable=False)
models_app = typer.Typer(help="Build and check the models Triton serves.", no_args_is_help=True)
templates_app = typer.Typer(help="Register, list and remove fusion templates.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks: figures go to files, nothing is asserted.", no_args_is_help=True)
gateway_app = typer.Typer(help="Run the gateway alone; manage its API keys.", no_args_is_help=True)
loadtest_app = typer.Typer(help="Full-link Locust load tests and capacity reports.", no_args_is_help=True)
eval_app = typer.Typer(help="Measure fusion quality on the development set of real faces.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(templates_app, name="templates")
app.add_typer(bench_app, name="bench")
app.add_typer(gateway_app, name="gateway")
app.add_typer(loadtest_app, name="loadtest")
app.add_typer(eval_app, name="eval")


def stop_on_sigterm() -> None:
    """SIGTERM (Kubernetes, systemd) stops like Ctrl-C: servers shut down cleanly."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def fail(message: str, code: int = 2) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


# ---- models ------------------------------------------------------------------------
@models_app.command("build")
def models_build(
    profile: str = typer.Option("cpu", help="Target profile: cpu (embedded default) or gpu."),
    gpus: str = typer.Option("0", help="gpu profile: comma-separated GPU indices for instance groups."),
    force: bool = typer.Option(False, help="Rebuild even when nothing changed."),
) -> None:
    """Build every model from package weights into model_repository/, check it, write configs."""
    from facefuse_build.configs import Profile
    from facefuse_build.errors import BuildError
    from facefuse_build.pipeline import build_repository

    try:
        gpu_list = tuple(int(g) for g in gpus.split(",") if g.strip())
    except ValueError:
        fail(f"--gpus {gpus!r} is not a comma-separated list of GPU indices (e.g. 0,1)")
    try:
        target = Profile(profile, gpu_list)
        typer.echo(f"building the {profile} repository in {get_settings().model_repository_dir}")
        report = build_repository(target, get_settings(), force=force, log=typer.echo)
    except BuildError as exc:
        fail(f"build failed: {exc}")
    for note in report.notes:
        typer.echo(f"  note: {note}")
    typer.echo(
        f"built: {', '.join(report.built) or 'nothing'}; unchanged: {', '.join(report.unchanged) or 'nothing'}; "
        f"configs written: {', '.join(report.configs_written) or 'none'}"
    )


# ---- templates -------------------------------------------------------------------
def _store():
    from facefuse.templates import TemplateStore

    return TemplateStore(get_settings().templates_path)


def _register(template_id: str, data: bytes, face: Optional[int], source: str) -> None:
    from facefuse.errors import FacefuseError
    from facefuse.local_pipeline import LocalPipeline

    try:
        artifact = LocalPipeline().analyze_template(template_id, data, face, source)
        version = _store().add(artifact)
    except (FacefuseError, FileNotFoundError) as exc:
        fail(str(exc))
    h, w = artifact.image.shape[:2]
    typer.echo(f"{template_id}: version {version}, {artifact.face_count} face(s), {w}x{h} px")


@templates_app.command("add")
def templates_add(
    image: Path = typer.Argument(..., exists=True, dir_okay=False, help="Template image (JPEG, PNG, WEBP, BMP)."),
    template_id: str = typer.Option(..., "--id", help="Template id: a-z, 0-9, '-', '_'."),
    face: Optional[int] = typer.Option(None, help="Use only this face (0 = leftmost); default all, up to 6."),
) -> None:
    """Analyse a template once and store it as the next version of its id."""
    _register(template_id, image.read_bytes(), face, str(image))


@templates_app.command("add-samples")
def templates_add_samples(force: bool = typer.Option(False, help="Re-register samples already present.")) -> None:
    """Register the sample templates made from package photos (skips ones present)."""
    from facefuse.samples import sample_templates

    store = _store()
    present = set(store.ids())
    for template_id, (data, source) in sample_templates().items():
        if template_id in present and not force:
            typer.echo(f"{template_id}: present")
            continue
        _register(template_id, data, None, source)


@templates_app.command("list")
def templates_list() -> None:
    """Registered templates: id, serving version, faces, size, source."""
    store = _store()
    for template_id in store.ids():
        info = store.info(template_id)  # the summary beside the artifact: no pixels loaded
        typer.echo(f"{template_id}\tv{info['version']}\t{info['face_count']} face(s)\t"
                   f"{info['width']}x{info['height']}\t{info['source']}")


@templates_app.command("remove")
def templates_remove(template_id: str = typer.Argument(...)) -> None:
    """Remove a template (every version); the server answers TEMPLATE_NOT_FOUND from then on."""
    from facefuse.errors import FacefuseError

    try:
        _store().remove(template_id)
    except FacefuseError as exc:
        fail(str(exc))
    typer.echo(f"removed {template_id}")


# ---- serving ---------------------------------------------------------------------
@app.command()
def serve(
    gateway_port: int = typer.Option(None, help="Gateway port (default FACEFUSE_GATEWAY_PORT, 50051)."),
) -> None:
    """Start the embedded Triton and the gateway in front of it; one Ctrl-C stops both."""
    from facefuse import stack
    from facefuse.gateway.dev_key import dev_key_path
    from facefuse.server.triton import TritonStartError

    s = get_settings()
    ports = (s.triton_grpc_port, s.triton_http_port, s.triton_metrics_port)
    stop_on_sigterm()
    try:
        with stack.in_process(s, triton_ports=ports, gateway_port=gateway_port) as (triton, gateway, _key):
            typer.echo(f"Triton ready: gRPC {triton.grpc_url}, HTTP {triton.http_url}, metrics {triton.metrics_url}")
            typer.echo(f"Gateway ready on port {gateway.port} (facefuse.v1); local API key in {dev_key_path(gateway.settings)}")
            typer.echo("Ctrl-C stops both")
            while triton.process.poll() is None:
                time.sleep(0.5)
            fail(f"tritonserver exited with code {triton.process.returncode}:\n{triton.log_tail()}")
    except TritonStartError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        typer.echo("stopped")



@gateway_app.command("run")
def gateway_run(
    port: int = typer.Option(None, help="Listen port (default FACEFUSE_GATEWAY_PORT, 50051; 0 picks one)."),
    triton_url: list[str] = typer.Option(None, help="Triton replica host:port; repeat for several (default FACEFUSE_GATEWAY_TRITON_URLS)."),
) -> None:
    """Run only the gateway, in front of Triton replicas started elsewhere (its own Deployment)."""
    import logging

    from facefuse.gateway.server import gateway_server, new_event_loop
    from facefuse.gateway.settings import GatewaySettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = GatewaySettings(**({"triton_urls": triton_url} if triton_url else {}))

    async def main() -> None:
        async with gateway_server(settings, port) as (server, bound, _):
            typer.echo(f"gateway listening on port {bound}, Triton replicas {', '.join(settings.triton_urls)}", err=True)
            await server.wait_for_termination()

    loop = new_event_loop()
    stop_on_sigterm()
    try:
        loop.run_until_complete(main())
    except KeyboardInterrupt:
        typer.echo("stopped", err=True)
    finally:
        loop.close()


@gateway_app.command("add-key")
def gateway_add_key(
    key_id: str = typer.Option(..., "--id", help="A name for the key (shown in logs)."),
    tenant: str = typer.Option(..., help="Tenant the key's quota belongs to."),
    scopes: str = typer.Option("fuse,templates:read", help="Comma-separated scopes."),
    rate_per_s: float = typer.Option(20.0, help="Sustained calls per second."),
    burst: int = typer.Option(40, help="Calls allowed at once above the rate."),
    max_concurrency: int = typer.Option(8, help="Calls in flight at most."),
) -> None:
    """Create an API key; it is printed once and stored only as a sha256 hash."""
    from facefuse.gateway.auth import add_key
    from facefuse.gateway.settings import GatewaySettings

    keys_file = GatewaySettings().keys_file
    key = add_key(keys_file, key_id, tenant, [x.strip() for x in scopes.split(",") if x.strip()],
                  rate_per_s, burst, max_concurrency)
    typer.echo(f"key {key_id!r} for tenant {tenant!r} added to {keys_file}:")
    typer.echo(key)


@app.command()
def fuse(
    photos: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="The user's photo(s); several map onto several template faces."),
    template: str = typer.Option(..., help="Template id (see `facefuse templates list`)."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the poster (.jpg, .png, .webp)."),
    fuse_degree: float = typer.Option(contract.DEFAULT_FUSE_DEGREE, min=0, max=100, help="Appearance: 0 template .. 100 user."),
    profile_degree: float = typer.Option(contract.DEFAULT_PROFILE_DEGREE, min=0, max=100, help="Face shape: 0 template .. 100 user."),
    face: list[int] = typer.Option(None, help="Template face per photo (0 = leftmost); repeat for several photos."),
    label: bool = typer.Option(True, help="Stamp the AI-synthesized label."),
    target: str = typer.Option(None, help="Gateway host:port (default 127.0.0.1:FACEFUSE_GATEWAY_PORT)."),
    api_key: str = typer.Option(None, envvar="FACEFUSE_API_KEY", help="API key (default: the local dev key)."),
) -> None:
    """Fuse photo(s) into a template through a running gateway (`facefuse serve`)."""
    from facefuse_client import FacefuseClient, FacefuseError
    from facefuse_client.cli import describe, fuse_files

    from facefuse.gateway.dev_key import dev_key_path
    from facefuse.gateway.settings import GatewaySettings

    gateway_settings = GatewaySettings()
    key_path = dev_key_path(gateway_settings)
    key = api_key or (key_path.read_text().strip() if key_path.is_file() else None)
    with FacefuseClient(target or f"127.0.0.1:{gateway_settings.port}", api_key=key) as client:
        try:
            poster = fuse_files(client, photos, template, output, face, fuse_degree=fuse_degree,
                                profile_degree=profile_degree, add_label=label)
        except (FacefuseError, ValueError) as exc:
            fail(str(exc))
    typer.echo(describe(poster, output))


@app.command()
def demo(out_dir: Path = typer.Option(Path("out"), help="Where posters and the strip go.")) -> None:
    """The main job: start Triton and the gateway, fuse sample photos into the sample templates, stop."""
    from facefuse.demo import run_demo

    run_demo(out_dir, echo=typer.echo)


# ---- benchmarks ------------------------------------------------------------------
@bench_app.command("photo")
def bench_photo(
    concurrency: str = typer.Option("1,2,4,8", help="Comma-separated client concurrencies."),
    requests: int = typer.Option(60, help="Posters per concurrency level, and per block of a round."),
    rounds: int = typer.Option(8, min=1, help="Alternating Triton/baseline blocks at the highest concurrency."),
    out_dir: Path = typer.Option(Path("var/bench"), help="Where photo-bench.json/.md go."),
) -> None:
    """Triton posters/s and latency vs the same stages hand-rolled, one process per core."""
    from facefuse.bench.photo import run_photo_bench

    levels = [int(c) for c in concurrency.split(",") if c.strip()]
    run_photo_bench(levels, requests, out_dir, rounds=rounds, echo=typer.echo)


@bench_app.command("gateway")
def bench_gateway(
    paired_calls: int = typer.Option(100, help="Fuse calls alternated direct / through the gateway."),
    concurrency: int = typer.Option(8, help="Concurrency of the throughput runs."),
    calls: int = typer.Option(120, help="Calls per throughput run."),
    out_dir: Path = typer.Option(Path("var/bench"), help="Where gateway-bench.json/.md go."),
) -> None:
    """Latency the gateway adds (p50, p99) and its throughput vs Triton directly."""
    from facefuse.bench.gateway import run_gateway_bench

    run_gateway_bench(paired_calls, concurrency, calls, out_dir, echo=typer.echo)


@loadtest_app.command("run")
def loadtest_run(
    shape: str = typer.Option("ramp", help="ramp (1, 2, 4 ... users), steady, or spike."),
    max_users: int = typer.Option(8, help="Most concurrent users."),
    step_s: float = typer.Option(10.0, help="ramp: seconds per user level."),
    duration_s: float = typer.Option(30.0, help="steady and spike: length of the run."),
    workers: int = typer.Option(0, help="Distributed mode: a Locust master and this many workers (0: one process)."),
    p99_ms: float = typer.Option(2000.0, help="p99 target the sustainable rate is judged by."),
    out_dir: Path = typer.Option(Path("var/loadtest/latest"), help="Report folder."),
    target: str = typer.Option(None, help="Gateway host:port of a running stack (default: start one here)."),
    metrics_url: str = typer.Option(None, help="With --target: Triton's metrics URL."),
    triton_url: str = typer.Option(None, help="With --target: Triton's gRPC URL (for instance counts)."),
    api_key: str = typer.Option(None, envvar="FACEFUSE_API_KEY", help="With --target: the gateway API key."),
    device: str = typer.Option(None, help="With --target: what one replica runs on, e.g. 'H100 x1, gpu profile'."),
    gpus_per_replica: int = typer.Option(0, help="With --target: GPUs of one replica (the planner sizes GPUs by it)."),
) -> None:
    """Run a bounded Locust load test and write the capacity report (Markdown, PNG, JSON)."""
    from facefuse.capacity.loadtest import LoadTestPlan, run_load_test, shell_command
    from facefuse.capacity.shapes import SHAPES

    if shape not in SHAPES:
        fail(f"--shape {shape!r} is not one of {', '.join(SHAPES)}")
    if target and not (metrics_url and triton_url and api_key and device):
        fail("--target needs --metrics-url, --triton-url, --api-key (or FACEFUSE_API_KEY) and --device")
    plan = LoadTestPlan(shape, max_users, step_s, duration_s, workers, p99_ms)
    command = shell_command(["facefuse", *sys.argv[1:]])
    run_load_test(plan, out_dir, command, (target, metrics_url, api_key, triton_url) if target else None,
                  device, gpus_per_replica, echo=typer.echo)


# ---- quality evaluation ----------------------------------------------------------
_EVAL_TEMPLATES = ("hopper-portrait", "painted-hopper", "astronaut-poster", "comic-astronaut")


@eval_app.command("devset")
def eval_devset(
    sheet: Path = typer.Option(Path("out/devset.png"), help="Where the sheet of every case goes."),
    rebuild: bool = typer.Option(False, help="Rebuild the cases even when the cached ones are current."),
) -> None:
    """Build the development set (var/devset/, manifest.json) and write a sheet of its cases."""
    from collections import Counter

    from facefuse.eval import devset

    if rebuild:
        devset.build(echo=typer.echo)
    cases = devset.load(echo=typer.echo)
    sheet.parent.mkdir(parents=True, exist_ok=True)
    devset.case_sheet(cases).save(sheet)
    counts = Counter(case.kind for case in cases)
    typer.echo(f"{len(cases)} cases ({', '.join(f'{k} {counts[k]}' for k in devset.KINDS)}); "
               f"manifest {devset.devset_dir() / devset.MANIFEST}; sheet {sheet}")


@eval_app.command("quality")
def eval_quality(
    out_dir: Path = typer.Option(Path("var/eval/quality"), help="Where quality.json, summary.md and contact-sheet.png go."),
    kinds: str = typer.Option(None, help="Comma-separated kinds to run (default all)."),
    cases: str = typer.Option(None, help="Comma-separated case names to run (default all)."),
    per_kind: int = typer.Option(0, help="At most this many cases of each kind (0: all)."),
    templates: str = typer.Option(",".join(_EVAL_TEMPLATES), help="Comma-separated template ids."),
    degrees: str = typer.Option("100/100,80/50", help="Comma-separated fuse/profile degree settings."),
    target: str = typer.Option(None, help="Gateway host:port of a running stack (default: start one here)."),
    api_key: str = typer.Option(None, envvar="FACEFUSE_API_KEY", help="With --target: the API key (default: the local dev key)."),
) -> None:
    """Fuse the development set into the sample templates through the stack; score and lay out the posters."""
    from facefuse.eval import devset
    from facefuse.eval.quality import EvalPlan, run_quality_eval

    try:
        settings = tuple(tuple(float(x) for x in d.split("/")) for d in degrees.split(",") if d.strip())
        if any(len(d) != 2 for d in settings):
            raise ValueError
    except ValueError:
        fail(f"--degrees {degrees!r} is not a list of fuse/profile pairs such as 100/100,80/50")
    selected = devset.load(tuple(kinds.split(",")) if kinds else None, tuple(cases.split(",")) if cases else None,
                           echo=typer.echo)
    if per_kind:
        selected = [c for c in selected if [x.name for x in selected if x.kind == c.kind].index(c.name) < per_kind]
    if not selected:
        fail("no case matches --kinds/--cases; `facefuse eval devset` lists them")
    if target and not api_key:
        from facefuse.gateway.dev_key import dev_key_path
        from facefuse.gateway.settings import GatewaySettings

        key_path = dev_key_path(GatewaySettings())
        api_key = key_path.read_text().strip() if key_path.is_file() else None
    plan = EvalPlan(selected, tuple(t for t in templates.split(",") if t), settings)
    result = run_quality_eval(plan, out_dir, target, api_key, command=" ".join(["facefuse", *sys.argv[1:]]), echo=typer.echo)
    typer.echo((out_dir / "summary.md").read_text())
    typer.echo(f"{len(result['posters'])} posters in {result['seconds']:.0f} s; wrote {out_dir / 'quality.json'}, "
               f"{out_dir / 'summary.md'}, {out_dir / 'contact-sheet.png'}")


@app.command()
def capacity(
    peak_tasks: int = typer.Option(..., help="Fusion tasks expected at the peak."),
    window_s: float = typer.Option(..., help="Over how many seconds they arrive."),
    p99_ms: float = typer.Option(..., help="p99 latency target in milliseconds."),
    from_report: Path = typer.Option(
        Path("loadtest/reports/cpu-2core/capacity.json"), "--from",
        help="Load-test capacity JSON or `bench photo` JSON (default: the committed report for the 2-core CPU box).",
    ),
    posters_per_task: float = typer.Option(1.0, help="Posters per task (a FuseMany of 5 is 5)."),
    hedge_fraction: float = typer.Option(0.05, help="Share of calls hedged to a second replica."),
    target_utilization: float = typer.Option(0.75, help="Fraction of measured capacity to plan for."),
) -> None:
    """Replicas and GPUs per stage for a campaign peak, from measured throughput."""
    from facefuse.capacity.planner import Assumptions, measurement_from_file, plan, render

    if not from_report.is_file():
        fail(f"{from_report} does not exist; run a load test (see README) or `facefuse bench photo` and pass --from")
    try:
        measured = measurement_from_file(from_report, p99_ms)
        result = plan(peak_tasks, window_s, p99_ms, measured,
                      Assumptions(posters_per_task, hedge_fraction, target_utilization=target_utilization))
    except ValueError as exc:
        fail(str(exc))
    typer.echo(render(result))


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())


if __name__ == "__main__":  # `python -m facefuse.cli`
    main()
