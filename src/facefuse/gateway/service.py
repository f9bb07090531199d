"""facefuse.v1.FaceFusion: auth, quota, cheap checks, then Triton; errors mapped here."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
from facefuse_client.v1 import facefuse_pb2 as pb
from facefuse_client.v1 import facefuse_pb2_grpc as pb_grpc

from facefuse import contract
from facefuse.errors import OptionError, Reason, TemplateError
from facefuse.gateway.auth import SCOPE_FUSE, SCOPE_TEMPLATES, Authenticator
from facefuse.gateway.beauty import BeautifyCalls, beauty_from
from facefuse.gateway.errors import DeadlineExceeded, Overloaded
from facefuse.gateway.guard import Call, CallGuard
from facefuse.gateway.latency import LatencyWindow
from facefuse.gateway.quotas import Quotas
from facefuse.gateway.routing import ReleaseRouter
from facefuse.gateway.settings import GatewaySettings
from facefuse.gateway.triton import TritonPool
from facefuse.templates import TemplateStore, check_template_id
from facefuse.triton_client import (
    ANALYZE_OUTPUTS, FUSE_OUTPUTS, FUSION_OUTPUTS, FuseOptions, analyze_inputs, fusion_inputs, option_inputs,
    Verdict, poster_bytes, poster_verdict, user_face_inputs, user_verdict,
)
from facefuse.vision.codec import check_photo

log = logging.getLogger("facefuse.gateway")

TEMPLATE_INFO_TTL_S = 1.0
FORMAT_NAMES = {pb.IMAGE_FORMAT_UNSPECIFIED: "jpeg", pb.JPEG: "jpeg", pb.PNG: "png", pb.WEBP: "webp"}
async def gather_or_cancel(*coroutines):
    """Results in order; the first failure cancels the rest and is raised as itself."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()


def options_from(message: pb.FuseOptions) -> FuseOptions:
    defaults = FuseOptions()
    options = FuseOptions(
        fuse_degree=message.fuse_degree if message.HasField("fuse_degree") else defaults.fuse_degree,
        profile_degree=message.profile_degree if message.HasField("profile_degree") else defaults.profile_degree,
        add_label=message.add_label if message.HasField("add_label") else defaults.add_label,
        output_format=_output_format(message.output_format),
        output_quality=message.output_quality if message.HasField("output_quality") else defaults.output_quality,
        beauty=beauty_from(message.beauty),
    )
    return options.validated()


def _output_format(value: int) -> str:
    if value not in FORMAT_NAMES:  # a newer client's enum value, or garbage
        raise OptionError(f"output_format {value} is not one of JPEG (1), PNG (2), WEBP (3)")
    return FORMAT_NAMES[value]


class FaceFusionService(BeautifyCalls, pb_grpc.FaceFusionServicer):
    def __init__(self, settings: GatewaySettings, triton: TritonPool):
        self.settings = settings
        self.triton = triton
        self.auth = Authenticator(settings)
        self.quotas = Quotas()
        self.store = TemplateStore(settings.template_dir)
        self._face_counts: dict[str, tuple[int, float]] = {}
        self.router = ReleaseRouter(settings.releases_file)
        # One guard for every RPC of the gateway; VideoJobs gets this one too (server.video_jobs).
        self.guard = CallGuard(self.auth, self.quotas, self.router)
        self._latencies: dict[str, LatencyWindow] = {}  # recent Triton calls per model

    # ---- plumbing ------------------------------------------------------------------
    def _deadline(self, context) -> float:
        remaining = context.time_remaining()
        if remaining is None:
            remaining = self.settings.default_timeout_s
        else:
            remaining -= self.settings.deadline_margin_ms / 1000
        return time.monotonic() + min(remaining, self.settings.max_timeout_s)

    def _template_faces(self, template_id: str) -> int:
        """Faces of a template, from its info file; cached for a second, so a new or
        changed template is seen within a second and the disk is not read per call."""
        check_template_id(template_id)
        now = time.monotonic()
        cached = self._face_counts.get(template_id)
        if cached is not None and now - cached[1] < TEMPLATE_INFO_TTL_S:
            return cached[0]
        try:
            count = int(self.store.info(template_id)["face_count"])
        except OSError:
            raise TemplateError(f"template {template_id!r} is not registered") from None
        except (ValueError, KeyError, TypeError):
            log.warning("template %s has an unreadable info file", template_id)
            raise TemplateError(f"template {template_id!r} is damaged on the server; it cannot be used") from None
        self._face_counts[template_id] = (count, now)
        return count

    def _latency(self, model: str) -> LatencyWindow:
        window = self._latencies.get(model)
        if window is None:
            window = self._latencies[model] = LatencyWindow()
        return window

    def _check_deadline(self, models: tuple[str, ...], deadline: float, calls: int = 1) -> None:
        """Refuse, before any stage runs, a call whose deadline is shorter than the
        fastest recent answer of the models it needs in sequence (it cannot be met:
        DEADLINE_EXCEEDED), or than the wait the calls already admitted imply at the
        replicas' busy throughput (it would most likely be missed: OVERLOADED)."""
        remaining = deadline - time.monotonic()
        floor = sum(self._latency(m).floor() for m in models)
        if remaining < floor:
            raise DeadlineExceeded(
                f"the deadline leaves {remaining * 1000:.0f} ms; the fastest recent answer took {floor * 1000:.0f} ms"
            )
        wait = self.triton.expected_wait_s(calls)
        # Only a share of the deadline may go to the predicted wait: the throughput it is
        # computed from wobbles on a shared machine, and a call admitted at the edge is
        # dropped later (a slow refusal) or answered too late (lost work).
        if remaining * self.settings.admission_deadline_share < max(wait, floor):
            raise Overloaded(
                f"calls admitted now wait about {wait * 1000:.0f} ms and the deadline leaves {remaining * 1000:.0f} ms; "
                "try again shortly or with a longer deadline",
                retry_after_s=self.settings.overloaded_retry_after_s,
            )

    def refuse_if_full(self, context, routes: tuple[tuple[str, ...], ...]) -> None:
        """Before a Fuse or FuseMany is read: refuse it as _check_deadline would refuse
        the cheapest call it can be, one Triton call along the fastest of `routes` (the
        model sequences it may need): DEADLINE_EXCEEDED when the deadline is shorter than
        that route's fastest answer, OVERLOADED when no Triton call is free or the
        predicted wait does not fit. A lower bound only: the exact checks run once the
        request says how many calls it needs."""
        remaining = self._deadline(context) - time.monotonic()
        floor = min(sum(self._latency(m).floor() for m in route) for route in routes)
        if remaining < floor:
            raise DeadlineExceeded(
                f"the deadline leaves {remaining * 1000:.0f} ms; the fastest recent answer took {floor * 1000:.0f} ms"
            )
        pool = self.triton
        capacity = pool.capacity()
        if pool.reserved + 1 > capacity:
            raise Overloaded(f"{pool.reserved} Triton calls are reserved of {capacity}; try again shortly",
                             retry_after_s=pool.retry_after_s)
        wait = pool.expected_wait_s(1)
        if remaining * self.settings.admission_deadline_share < max(wait, floor):
            raise Overloaded(
                f"calls admitted now wait about {wait * 1000:.0f} ms and the deadline leaves {remaining * 1000:.0f} ms; "
                "try again shortly or with a longer deadline",
                retry_after_s=self.settings.overloaded_retry_after_s,
            )

    async def _infer(self, model: str, inputs, outputs, deadline: float, release: int | None):
        """release: the call's (Call.release); every Triton call of one request goes to it."""
        # The window learns Triton's answer time only (not the gateway's queue): the floor
        # and the queue's drop rule are about service time.
        return await self.triton.infer(self.router.model(model, release), inputs, outputs, deadline,
                                       service=self._latency(model))

    async def _analyze(self, photo: bytes, deadline: float,
                       release: int | None) -> tuple[np.ndarray, np.ndarray, Verdict]:
        """The photo's face, its mesh and the verdict on it (quality, warnings)."""
        result = await self._infer("face_analyze", analyze_inputs(photo), ANALYZE_OUTPUTS, deadline, release)
        return result.as_numpy("user_faces")[0], result.as_numpy("user_meshes")[0], user_verdict(result)

    async def _fuse_analyzed(self, user_inputs: list, template_id: str, indices, options: FuseOptions,
                             deadline: float, release: int | None) -> tuple[bytes, Verdict]:
        """The poster and its own verdict. user_inputs: user_face_inputs(), shared by every
        template of a call."""
        result = await self._infer("face_fuse", [*user_inputs, *option_inputs(template_id, indices, options)],
                                   FUSE_OUTPUTS, deadline, release)
        return poster_bytes(result), poster_verdict(result)

    @staticmethod
    def _poster(template_id: str, image: bytes, options: FuseOptions, verdict: Verdict,
                photo_verdict: Verdict) -> pb.Poster:
        fmt = {"jpeg": pb.JPEG, "png": pb.PNG, "webp": pb.WEBP}[options.output_format]
        (quality, warnings), (photo_quality, photo_warnings) = verdict, photo_verdict
        return pb.Poster(template_id=template_id, image=image, format=fmt, quality=quality, warnings=warnings,
                         photo_quality=photo_quality, photo_warnings=photo_warnings)

    # ---- RPCs --------------------------------------------------------------------------
    async def Fuse(self, request: pb.FuseRequest, context) -> pb.FuseResponse:
        deadline = self._deadline(context)

        async def work(call: Call) -> pb.FuseResponse:
            options = options_from(request.options)
            face_count = self._template_faces(request.template_id)
            if request.faces:
                image, verdict, photo_verdict = await self._fuse_mapped(request, face_count, options, deadline,
                                                                        call.release)
            else:
                check_photo(request.photo, self.settings.max_image_bytes)
                if not 0 <= request.template_face_index < face_count:
                    raise TemplateError(
                        f"template {request.template_id!r} has faces 0..{face_count - 1}; "
                        f"template_face_index {request.template_face_index} does not exist",
                        Reason.TEMPLATE_FACE_NOT_FOUND,
                    )
                self._check_deadline(("face_fusion",), deadline, calls=1)
                inputs = fusion_inputs(request.photo, request.template_id, request.template_face_index, options)
                with self.triton.reserve(1):
                    result = await self._infer("face_fusion", inputs, FUSION_OUTPUTS, deadline, call.release)
                image, verdict, photo_verdict = poster_bytes(result), poster_verdict(result), user_verdict(result)
            return pb.FuseResponse(request_id=call.request_id,
                                   poster=self._poster(request.template_id, image, options, verdict, photo_verdict))

        return await self.guard(context, SCOPE_FUSE, "Fuse", request.request_id, work)

    async def _fuse_mapped(self, request: pb.FuseRequest, face_count: int, options: FuseOptions,
                           deadline: float, release: int | None) -> tuple[bytes, Verdict, Verdict]:
        """Multi-face: each photo analysed once (concurrently), then one face_fuse with K faces.
        The poster's verdict is its own (every face checked); the photos' is the weakest
        photo's score with all of their warnings."""
        mappings = list(request.faces)
        if len(mappings) > contract.MAX_FACES:
            raise OptionError(f"{len(mappings)} face mappings; at most {contract.MAX_FACES} per poster")
        indices = [m.template_face_index for m in mappings]
        if len(set(indices)) != len(indices):
            raise OptionError(f"template face indices {indices} repeat; map each template face once")
        for index in indices:
            if not 0 <= index < face_count:
                raise TemplateError(
                    f"template {request.template_id!r} has faces 0..{face_count - 1}; face {index} does not exist",
                    Reason.TEMPLATE_FACE_NOT_FOUND,
                )
        for number, mapping in enumerate(mappings):
            check_photo(mapping.photo, self.settings.max_image_bytes, f"photo {number}")
        self._check_deadline(("face_analyze", "face_fuse"), deadline, calls=len(mappings) + 1)
        with self.triton.reserve(len(mappings) + 1):  # every analysis and the fuse, before any of them
            analysed = await gather_or_cancel(*[self._analyze(m.photo, deadline, release) for m in mappings])
            faces = np.concatenate([f for f, _, _ in analysed])
            meshes = np.concatenate([m for _, m, _ in analysed])
            photo_verdict = (min(q for _, _, (q, _) in analysed),
                             list(dict.fromkeys(w for _, _, (_, ws) in analysed for w in ws)))
            image, verdict = await self._fuse_analyzed(user_face_inputs(faces, meshes), request.template_id, indices,
                                                       options, deadline, release)
        return image, verdict, photo_verdict

    async def FuseMany(self, request: pb.FuseManyRequest, context) -> pb.FuseManyResponse:
        deadline = self._deadline(context)

        async def work(call: Call) -> pb.FuseManyResponse:
            options = options_from(request.options)
            templates = list(request.template_ids)
            if not 1 <= len(templates) <= self.settings.max_templates_per_call:
                raise OptionError(f"{len(templates)} templates; send 1..{self.settings.max_templates_per_call}")
            for template_id in templates:
                self._template_faces(template_id)
            check_photo(request.photo, self.settings.max_image_bytes)
            self._check_deadline(("face_analyze", "face_fuse"), deadline, calls=1 + len(templates))
            with self.triton.reserve(1 + len(templates)):  # the analysis and every template, before any work
                faces, meshes, photo_verdict = await self._analyze(request.photo, deadline, call.release)
                user_inputs = user_face_inputs(faces, meshes)
                posters = await gather_or_cancel(
                    *[self._fuse_analyzed(user_inputs, t, [0], options, deadline, call.release) for t in templates]
                )
            return pb.FuseManyResponse(request_id=call.request_id, posters=[
                self._poster(t, image, options, verdict, photo_verdict) for t, (image, verdict) in zip(templates, posters)
            ])

        return await self.guard(context, SCOPE_FUSE, "FuseMany", request.request_id, work)

    def _template_infos(self) -> list[dict]:
        """Every readable template; a damaged one is logged and left out, not fatal to the list."""
        infos = []
        for template_id in self.store.ids():
            try:
                info = self.store.info(template_id)
                infos.append({k: info[k] for k in ("template_id", "version", "face_count", "width", "height")})
            except Exception:  # noqa: BLE001 - unreadable artifact or info file: skip that template
                log.warning("template %s is unreadable; left out of ListTemplates", template_id)
        return infos

    async def ListTemplates(self, request: pb.ListTemplatesRequest, context) -> pb.ListTemplatesResponse:
        async def work(call: Call) -> pb.ListTemplatesResponse:
            infos = self._template_infos()
            return pb.ListTemplatesResponse(templates=[
                pb.TemplateInfo(template_id=i["template_id"], version=i["version"], face_count=i["face_count"],
                                width=i["width"], height=i["height"])
                for i in infos
            ])

        return await self.guard(context, SCOPE_TEMPLATES, "ListTemplates", "", work)
