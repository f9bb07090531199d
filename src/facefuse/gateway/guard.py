"""The call guard: what every facefuse.v1 RPC does around its work, in one place.

FaceFusion and VideoJobs (facefuse.jobs.service) both run their work inside it: the
caller authenticated and admitted, the request id checked, the model release chosen,
and any failure turned into a status with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Awaitable, Callable, TypeVar

from facefuse.errors import FacefuseError, OptionError, Reason
from facefuse.gateway.auth import Authenticator, Principal
from facefuse.gateway.errors import GatewayError, status_for
from facefuse.gateway.observability import note_call
from facefuse.gateway.quotas import Quotas
from facefuse.gateway.routing import RELEASE_HEADER, ReleaseRouter

log = logging.getLogger("facefuse.gateway")

# Echoed back and logged: short, and no characters that could forge a log line.
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# The principal of a call the admission interceptor already authenticated and admitted.
ADMITTED: ContextVar[Principal | None] = ContextVar("facefuse_gateway_admitted", default=None)

T = TypeVar("T")


def check_request_id(request_id: str) -> str:
    """The caller's id, or a new one when none was sent."""
    if not request_id:
        return uuid.uuid4().hex
    if not REQUEST_ID_PATTERN.match(request_id):
        raise OptionError(f"request_id of {len(request_id)} characters is invalid; use 1-128 characters of "
                          "A-Z, a-z, 0-9, '.', '_', ':' and '-'")
    return request_id


@dataclass(frozen=True)
class Call:
    """What the guard hands the work: who calls, the checked request id, and the model
    release every Triton call of this request goes to (None: the plain ensembles)."""

    principal: Principal
    request_id: str
    release: int | None


class CallGuard:
    def __init__(self, auth: Authenticator, quotas: Quotas, router: ReleaseRouter):
        self.auth, self.quotas, self.router = auth, quotas, router

    async def __call__(self, context, scope: str, method: str, request_id: str,
                       work: Callable[[Call], Awaitable[T]]) -> T:
        """Authenticate, admit, run work(call); any failure becomes a status with its reason.

        Behind the admission interceptor (facefuse.gateway.admission) the caller was
        authenticated and admitted before its request was read: its principal is in
        ADMITTED."""
        started = time.perf_counter()
        principal: Principal | None = None
        raw_request_id, request_id = request_id, "-"
        try:
            principal = ADMITTED.get()
            if principal is None:  # not seen by the admission interceptor (a server built without it)
                principal = self.auth.authenticate(context.invocation_metadata() or ())
                principal.require(scope)
                quota = self.quotas.admit(principal)
            else:
                quota = contextlib.nullcontext()  # the interceptor holds the call's place
            note_call(tenant=principal.tenant)
            request_id = check_request_id(raw_request_id)
            note_call(request_id=request_id)
            with quota:
                release = self.router.choose()  # once per request: a poster is made by one release
                result = await work(Call(principal, request_id, release))
            if release is not None:
                context.set_trailing_metadata(((RELEASE_HEADER, str(release)),))
            log.info("%s ok tenant=%s request=%s %.1f ms", method, principal.tenant, request_id,
                     (time.perf_counter() - started) * 1000)
            return result
        except FacefuseError as error:
            log.info("%s %s tenant=%s request=%s %.1f ms", method, error.reason.value,
                     principal.tenant if principal else "-", request_id, (time.perf_counter() - started) * 1000)
            await context.abort_with_status(status_for(error, context.time_remaining()))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the caller gets INTERNAL, the log gets the trace
            log.exception("%s failed request=%s", method, request_id)
            await context.abort_with_status(status_for(GatewayError("internal error", Reason.INTERNAL)))
