"""`facefuse models list|publish|canary|promote|rollback|audit` (registered on the models app)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from facefuse.settings import get_settings


def _fail(message: str) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _triton_url(triton: str | None) -> str:
    s = get_settings()
    return triton or f"{s.triton_host}:{s.triton_grpc_port}"


def _admin(triton: str | None, margins=None):
    from facefuse.models_admin.gates import GateMargins
    from facefuse.models_admin.lifecycle import ModelAdmin
    from facefuse.models_admin.triton_admin import TritonAdmin

    s = get_settings()
    key = s.triton_admin_key.get_secret_value() if s.triton_admin_key else None
    gateway_key = s.triton_gateway_key.get_secret_value() if s.triton_gateway_key else None
    if not key or not gateway_key:
        _fail("FACEFUSE_TRITON_ADMIN_KEY and FACEFUSE_TRITON_GATEWAY_KEY must both be set: loading models "
              "needs Triton's admin key, and the gates' test calls its gateway key (start `facefuse serve` "
              "with the same variables set)")
    return ModelAdmin(s, TritonAdmin(_triton_url(triton), key, gateway_key), log=typer.echo, margins=margins or GateMargins())


def _run(action):
    from facefuse.models_admin.errors import GateFailed, ModelAdminError

    try:
        return action()
    except GateFailed as failed:
        _fail(f"{failed}\nthe serving release is unchanged; figures are in the audit log (`facefuse models audit`)")
    except ModelAdminError as exc:
        _fail(str(exc))


TRITON_OPTION = typer.Option(None, "--triton", help="Triton gRPC host:port (default: the local `facefuse serve`).")


def register(models_app: typer.Typer) -> None:
    register_metrics(models_app)

    @models_app.command("list")
    def models_list() -> None:
        """Versions of each network, where they came from, and which release serves."""
        from facefuse.models_admin import versions
        from facefuse.models_admin.releases import load_state

        repository = get_settings().model_repository_dir
        state = load_state(repository)
        for model in versions.VERSIONED_MODELS:
            typer.echo(model)
            for version in versions.versions(repository, model):
                roles = []
                if state is not None:
                    for role in ("serving", "candidate", "previous"):
                        number = getattr(state, role)
                        if number is not None and state.releases[number].versions.get(model) == version:
                            roles.append(role if role != "candidate" else f"candidate {state.canary_percent:g}%")
                elif version == versions.versions(repository, model)[-1]:
                    roles.append("serving")
                p = versions.provenance(repository, model, version)
                origin = p.get("origin", "?")
                where = p.get("source_file") or (f"weights {p['source_weights_sha256'][:12]}" if p.get("source_weights_sha256") else "")
                typer.echo(f"  {version:>3}  {', '.join(roles) or '-':<22} {origin:<7} {where:<40} "
                           f"{p.get('created_by', '?')} {p.get('created_at', '?')}")
        if state is not None:
            typer.echo("releases")
            for number, release in sorted(state.releases.items()):
                role = [r for r in ("serving", "candidate", "previous") if getattr(state, r) == number]
                pinned = ", ".join(f"{m} {v}" for m, v in sorted(release.versions.items()))
                typer.echo(f"  r{number}  {(role or ['-'])[0]:<10} {pinned}")

    @models_app.command("publish")
    def models_publish(
        model: str = typer.Argument(..., help="face_detector, face_landmarks or fuse."),
        source: Optional[Path] = typer.Option(None, "--from", help="An ONNX file with the model's tensor contract."),
        version: Optional[int] = typer.Option(None, help="Publish a version `facefuse models build` made instead."),
        max_pixel_diff: Optional[float] = typer.Option(None, help="Gate (off by default): mean |candidate - serving| in the fused region."),
        max_identity_drop: float = typer.Option(0.05, help="Gate: identity with the user (eval quality), below serving."),
        max_sharpness_drop: float = typer.Option(0.2, help="Gate: relative sharpness loss against serving."),
        min_change_ratio: float = typer.Option(0.6, help="Gate: candidate's change of the template / serving's."),
        max_mesh_shift_px: float = typer.Option(1.0, help="Gate: mean mesh shift against the serving version."),
        max_latency_increase: float = typer.Option(0.5, help="Gate: candidate median latency <= serving * (1 + this)."),
        triton: Optional[str] = TRITON_OPTION,
    ) -> None:
        """Add a new version beside the serving one, load it, gate it; it then waits for canary/promote."""
        from facefuse.models_admin.gates import GateMargins

        if (source is None) == (version is None):
            _fail("pass exactly one of --from PATH.onnx or --version N")
        margins = GateMargins(max_mesh_shift_px=max_mesh_shift_px, min_change_ratio=min_change_ratio,
                              max_pixel_diff=max_pixel_diff, max_latency_increase=max_latency_increase,
                              max_identity_drop=max_identity_drop, max_sharpness_drop=max_sharpness_drop)
        admin = _admin(triton, margins)
        release, gate = _run(lambda: admin.publish(model, source, version))
        golden = gate["golden"]
        typer.echo(f"release {release} passed its gates: latency {golden.get('latency_ms')}, "
                   f"posters {json.dumps(golden['posters'])}")
        typer.echo(f"next: facefuse models canary --release {release} --percent 10")

    @models_app.command("canary")
    def models_canary(
        release: int = typer.Option(..., help="The candidate release (publish prints it)."),
        percent: float = typer.Option(..., help="Share of calls, 0..100, the candidate makes."),
        triton: Optional[str] = TRITON_OPTION,
    ) -> None:
        """Send a share of calls to the candidate release."""
        admin = _admin(triton)
        _run(lambda: admin.canary(release, percent))
        typer.echo(f"release {release} takes {percent:g}% of calls")

    @models_app.command("promote")
    def models_promote(
        release: Optional[int] = typer.Option(None, help="Default: the candidate."),
        triton: Optional[str] = TRITON_OPTION,
    ) -> None:
        """Make a release serve every call; the one it replaces stays loaded for rollback."""
        admin = _admin(triton)
        number = _run(lambda: admin.promote(release))
        typer.echo(f"release {number} serves every call")

    @models_app.command("rollback")
    def models_rollback(triton: Optional[str] = TRITON_OPTION) -> None:
        """Stop a canary, or serve the previous release again."""
        admin = _admin(triton)
        number = _run(admin.rollback)
        typer.echo(f"release {number} serves every call")

    @models_app.command("audit")
    def models_audit(last: int = typer.Option(20, help="How many entries.")) -> None:
        """Every swap: who, what, when, gate figures (JSON lines)."""
        from facefuse.models_admin.releases import read_audit

        for entry in read_audit(get_settings().model_repository_dir)[-last:]:
            typer.echo(json.dumps(entry, sort_keys=True))


def release_metrics(text: str) -> dict[tuple[str, str], dict[str, float]]:
    """(model, version) -> successes, failures, mean request ms, from Triton's Prometheus text,
    for the networks' versions and the releases' ensembles."""
    from prometheus_client.parser import text_string_to_metric_families

    from facefuse.models_admin.versions import VERSIONED_MODELS

    wanted = {"nv_inference_request_success": "ok", "nv_inference_request_failure": "failed",
              "nv_inference_request_duration_us": "duration_us"}
    figures: dict[tuple[str, str], dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = wanted.get(sample.name.removesuffix("_total"))
            model = sample.labels.get("model", "")
            if key is None or not (model in VERSIONED_MODELS or "_r" in model):
                continue
            entry = figures.setdefault((model, sample.labels.get("version", "")), {"ok": 0.0, "failed": 0.0, "duration_us": 0.0})
            entry[key] += float(sample.value)
    for entry in figures.values():
        entry["mean_ms"] = round(entry.pop("duration_us") / 1000 / entry["ok"], 1) if entry["ok"] else None
    return figures


def register_metrics(models_app: typer.Typer) -> None:
    @models_app.command("metrics")
    def models_metrics(
        metrics_url: Optional[str] = typer.Option(None, help="Triton's metrics URL (default: the local serve's)."),
    ) -> None:
        """Calls, failures and mean latency per network version and per release ensemble, to compare a canary."""
        import urllib.request

        s = get_settings()
        url = metrics_url or f"http://{s.triton_host}:{s.triton_metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            figures = release_metrics(reply.read().decode())
        for (model, version), f in sorted(figures.items()):
            typer.echo(f"{model:<18} v{version:<3} ok {int(f['ok']):>7}  failed {int(f['failed']):>5}  "
                       f"mean {f['mean_ms'] if f['mean_ms'] is not None else '-'} ms")
