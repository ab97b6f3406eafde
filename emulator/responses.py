"""HTTP ↔ backend translation (moto's ``responses.py``): signed ECS and EVS endpoints, the admin API.

Every response is JSON (but an injected plain-text error) and carries a fresh ``X-Request-Id``.
Signed endpoints wait any injected latency, then check, in the gateway's order: the route exists
(else 404 ``APIGW.0101``), the signature (401 ``APIGW.0301``); then the injected rate limit,
errors, hangs and dropped connections apply (``emulator.faults``); then ECS checks the URL's
project against the credential's (400 ``Ecs.0023``) and the backend answers or raises
``EcsError`` (``NovaError`` for EVS, in the OpenStack shape).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from emulator.auth import AuthError, ReceivedRequest, verify
from emulator.config import EmulatorCredential
from emulator.faults import (
    RATE_LIMIT_CODE,
    CallFault,
    ErrorRule,
    FaultConfig,
    HangRule,
    RateLimit,
    describe_errors,
)
from emulator.models import (
    FAIL,
    AttachedVolume,
    CallRecord,
    DetachRecord,
    EcsBackend,
    EcsError,
    Job,
    JobFailure,
    NovaError,
    ServerDetail,
    Snapshot,
    VolumeDetail,
    VolumeFault,
    invalid_parameter,
    iso_ms,
    iso_s,
    new_id,
)

VM_STATES = {"ACTIVE": "active", "SHUTOFF": "stopped", "BUILD": "building", "ERROR": "error"}
# Sub-job types are undocumented (docs/cloud-api.md §10); these names are the emulator's invention.
SUB_JOB_TYPES = {"detachVolume": "detachSingleVolume", "attachVolume": "attachSingleVolume"}
API_NOT_FOUND = "The API does not exist or has not been published in the environment"
DETACH_PATH = re.compile(r"/cloudservers/[^/]+/detachvolume/[^/]+$")

Endpoint = Callable[[Request], Awaitable[Response]]


# -- response helpers --------------------------------------------------------------------------


def request_id(request: Request) -> str:
    """This request's id, made on first use (one per request)."""
    rid: str | None = getattr(request.state, "request_id", None)
    if rid is None:
        rid = new_id()
        request.state.request_id = rid
    return rid


def json_response(request: Request, payload: Mapping[str, Any], status: int = 200) -> Response:
    """A JSON response with the ``X-Request-Id`` header."""
    return JSONResponse(dict(payload), status_code=status, headers={"X-Request-Id": request_id(request)})


def gateway_error(request: Request, status: int, code: str, message: str) -> Response:
    """The API gateway's error shape (``APIGW.xxxx``)."""
    body = {"error_code": code, "error_msg": message, "request_id": request_id(request)}
    return json_response(request, body, status)


def ecs_error(request: Request, error: EcsError) -> Response:
    """The ECS v1 error shape (``{"error": {"code", "message"}}``), or for a ``NovaError`` the
    OpenStack one (``{"itemNotFound": {"code": 404, "message"}}``)."""
    if isinstance(error, NovaError):
        body = {error.code: {"code": error.status, "message": error.message}}
    else:
        body = {"error": {"code": error.code, "message": error.message}}
    return json_response(request, body, error.status)


def injected_error(request: Request, rule: ErrorRule, rate_limit: RateLimit | None) -> Response:
    """An injected error's answer, in the shape of its code's family (see ``emulator.faults``)."""
    code = rule.error_code
    message = rule.text(rate_limit)
    if code is None:
        text = f"{rule.status} {message}"
        response: Response = PlainTextResponse(
            text, rule.status, headers={"X-Request-Id": request_id(request)}
        )
    elif code.startswith(("APIGW.", "APIG.")):
        response = gateway_error(request, rule.status, code, message)
    else:
        response = ecs_error(request, EcsError(rule.status, code, message))
    if rule.retry_after is not None:
        response.headers["Retry-After"] = str(rule.retry_after)
    return response


async def client_left_within(request: Request, seconds: float) -> bool:
    """Wait ``seconds`` or until the client closes the connection; true if it did."""
    with anyio.move_on_after(seconds):
        message = await request.receive()
        while message["type"] != "http.disconnect":
            message = await request.receive()
        return True
    return False


async def drop_connection(request: Request) -> Response:
    """Close the connection without answering a byte: aborts the socket of uvicorn's HTTP cycle
    (both its h11 and httptools protocols). The returned response is never sent."""
    cycle = getattr(request.receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if not isinstance(transport, asyncio.Transport):
        raise RuntimeError("dropping a connection needs the emulator to be served by uvicorn")
    transport.abort()
    await client_left_within(request, 1.0)
    return Response(status_code=500)


def authenticate(
    request: Request, body: bytes, backend: EcsBackend
) -> tuple[ReceivedRequest, EmulatorCredential]:
    """The request as received and the credential that signed it (``AuthError`` if refused)."""
    scope = request.scope
    received = ReceivedRequest(
        method=request.method,
        raw_path=scope.get("raw_path") or scope["path"].encode("utf-8"),
        raw_query=scope.get("query_string", b""),
        headers=scope["headers"],
        body=body,
    )
    credential = verify(
        received,
        backend.credential,
        now=backend.now(),
        max_skew_s=backend.config.max_clock_skew_s,
    )
    return received, credential


def project_allowed(received: ReceivedRequest, project_id: str, credential: EmulatorCredential) -> bool:
    """The URL's project is the credential's, and so is ``X-Project-Id`` when it is sent."""
    header = received.header("x-project-id")
    return project_id == credential.project_id and header in (None, project_id)


# -- views of backend records ------------------------------------------------------------------


def server_view(detail: ServerDetail) -> dict[str, Any]:
    """A server as ``GET /v1/{project_id}/cloudservers/{server_id}`` shows it."""
    server = detail.server
    return {
        "id": server.id,
        "name": server.name,
        "status": server.status,
        "OS-EXT-STS:task_state": None,
        "OS-EXT-STS:vm_state": VM_STATES.get(server.status, server.status.lower()),
        "locked": server.locked,
        "tags": [f"{key}={value}" for key, value in server.tags.items()],
        "metadata": dict(server.metadata),
        "OS-EXT-SRV-ATTR:root_device_name": server.root_device_name,
        "os-extended-volumes:volumes_attached": [
            {
                "id": v.volume.id,
                "bootIndex": "0" if v.attachment.boot_index == 0 else "-1",
                "device": v.attachment.device,
                "delete_on_termination": "false",
            }
            for v in detail.volumes
        ],
        "created": iso_s(server.created),
        "updated": iso_s(server.updated),
        "tenant_id": server.project_id,
    }


def block_device_view(attached: AttachedVolume) -> dict[str, Any]:
    """One entry of ``…/block_device``."""
    attachment = attached.attachment
    return {
        "serverId": attachment.server_id,
        "volumeId": attachment.volume_id,
        "id": attachment.volume_id,
        "device": attachment.device,
        "size": attached.volume.size,
        "bootIndex": attachment.boot_index,
        "pciAddress": attachment.pci_address,
        "bus": attachment.bus,
    }


def evs_time(timestamp: float) -> str:
    """``2024-01-10T08:00:00.000000``: EVS's time format (no zone)."""
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")


def volume_view(detail: VolumeDetail) -> dict[str, Any]:
    """A volume as EVS ``GET /v2/{project_id}/cloudvolumes/{volume_id}`` shows it.

    ``metadata`` carries ``hw:passthrough`` (SCSI mode) when the disk is attached on the SCSI bus.
    """
    volume = detail.volume
    scsi = any(a.bus == "scsi" for a in detail.attachments)
    return {
        "id": volume.id,
        "name": volume.name,
        "status": volume.status,
        "size": volume.size,
        "volume_type": volume.volume_type,
        "bootable": "true" if volume.bootable else "false",
        "multiattach": volume.multiattach,
        "shareable": "true" if volume.multiattach else "false",
        "attachments": [
            {
                "id": a.volume_id,
                "attachment_id": a.attachment_id,
                "server_id": a.server_id,
                "volume_id": a.volume_id,
                "device": a.device,
                "host_name": None,
                "attached_at": evs_time(a.attached_at),
            }
            for a in detail.attachments
        ],
        "metadata": {"hw:passthrough": "true"} if scsi else {},
        "os-vol-tenant-attr:tenant_id": volume.project_id,
    }


def job_view(job: Job) -> dict[str, Any]:
    """A job as ``GET /v1/{project_id}/jobs/{job_id}`` shows it, with its one sub-job."""
    failure = job.failure if job.status == FAIL else None
    error_code = failure.error_code if failure else None
    fail_reason = failure.fail_reason if failure else None
    times = {
        "begin_time": iso_ms(job.begin),
        "end_time": iso_ms(job.end) if job.end is not None else "",
        "error_code": error_code,
        "fail_reason": fail_reason,
    }
    sub_entities: dict[str, Any] = {"server_id": job.server_id}
    if fail_reason is not None:
        sub_entities["errorcode_message"] = fail_reason
    sub_job = {
        "status": job.status,
        "job_id": job.sub_job_id,
        "job_type": SUB_JOB_TYPES[job.job_type],
        **times,
        "entities": sub_entities,
    }
    return {
        "status": job.status,
        "job_id": job.id,
        "job_type": job.job_type,
        **times,
        "entities": {"server_id": job.server_id, "sub_jobs_total": 1, "sub_jobs": [sub_job]},
    }


# -- the signed ECS API ------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiCall:
    """An authenticated call: the URL's project, path and query parameters, raw body."""

    project_id: str
    params: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class ApiResult:
    """A handler's answer; ``volume_id`` names a volume the path does not (attach)."""

    payload: dict[str, Any]
    volume_id: str | None = None


Handler = Callable[[ApiCall], ApiResult]


@dataclass(frozen=True)
class _Outcome:
    """What a call came to; ``response`` None: nothing is answered and the connection closes."""

    response: Response | None
    error_code: str | None = None
    volume_id: str | None = None
    job_id: str | None = None
    fault: str | None = None
    reached_backend: bool = True


class _VolumeAttachment(BaseModel):
    volume_id: str = Field(alias="volumeId")
    device: str | None = None


class _AttachBody(BaseModel):
    volume_attachment: _VolumeAttachment = Field(alias="volumeAttachment")


def _int_query(call: ApiCall, name: str, default: int) -> int:
    value = call.query.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise invalid_parameter(f"{name} '{value}' is not an integer") from None


def _first_error(error: ValidationError) -> str:
    detail = error.errors()[0]
    location = ".".join(str(part) for part in detail["loc"])
    return f"{location}: {detail['msg']}" if location else str(detail["msg"])


class EcsApi:
    """The ECS endpoints: ``endpoint(handler)`` adds signing checks, errors and the ledger."""

    def __init__(self, backend: EcsBackend) -> None:
        self._backend = backend

    def endpoint(self, handler: Handler) -> Endpoint:
        """Wrap a handler into a signed Starlette endpoint, with the injected faults."""

        async def signed_endpoint(request: Request) -> Response:
            outcome = await self._gateway(request, await request.body(), handler)
            self.record(request, outcome)
            if outcome.response is None:
                return await drop_connection(request)
            return outcome.response

        return signed_endpoint

    async def _gateway(self, request: Request, body: bytes, handler: Handler) -> _Outcome:
        """Signature check, then the faults in the order ``emulator.faults`` documents."""
        faults = self._backend.faults
        delay = faults.latency()
        if delay > 0:
            await anyio.sleep(delay)
        try:
            received, credential = authenticate(request, body, self._backend)
        except AuthError as exc:
            refused = gateway_error(request, 401, "APIGW.0301", str(exc))
            return _Outcome(refused, "APIGW.0301", reached_backend=False)
        throttled = faults.throttle(credential.access_key)
        if throttled is not None:
            refused = gateway_error(request, 429, RATE_LIMIT_CODE, throttled.message)
            refused.headers["Retry-After"] = str(throttled.retry_after_s)
            return _Outcome(refused, RATE_LIMIT_CODE, fault="rate_limit", reached_backend=False)
        rule = faults.pick(request.method, request.url.path)

        def perform() -> _Outcome:
            return self._dispatch(request, received, credential, body, handler)

        if rule is None:
            return perform()
        return await self._inject(request, rule, perform, faults.config.rate_limit)

    async def _inject(
        self,
        request: Request,
        rule: CallFault,
        perform: Callable[[], _Outcome],
        rate_limit: RateLimit | None,
    ) -> _Outcome:
        """Apply one fault before ECS performs the call, or after it (``after_commit``)."""
        if isinstance(rule, HangRule):
            if not rule.after_commit and await client_left_within(request, rule.seconds):
                return _Outcome(None, fault=rule.label, reached_backend=False)
            outcome = perform()
            if rule.after_commit:
                await client_left_within(request, rule.seconds)
            return replace(outcome, fault=rule.label)
        response, code = (
            (injected_error(request, rule, rate_limit), rule.error_code)
            if isinstance(rule, ErrorRule)
            else (None, None)
        )
        if rule.after_commit:
            return replace(perform(), response=response, error_code=code, fault=rule.label)
        return _Outcome(response, code, fault=rule.label, reached_backend=False)

    def _dispatch(
        self,
        request: Request,
        received: ReceivedRequest,
        credential: EmulatorCredential,
        body: bytes,
        handler: Handler,
    ) -> _Outcome:
        project_id = request.path_params["project_id"]
        try:
            if not project_allowed(received, project_id, credential):
                raise EcsError(400, "Ecs.0023", "The project in the URL does not match the credential's.")
            call = ApiCall(project_id, request.path_params, request.query_params, body)
            result = handler(call)
        except EcsError as exc:
            return _Outcome(ecs_error(request, exc), exc.code)
        return _Outcome(
            json_response(request, result.payload),
            volume_id=result.volume_id,
            job_id=result.payload.get("job_id"),
        )

    def record(self, request: Request, outcome: _Outcome) -> None:
        """Add a call to the ledger."""
        params = request.path_params
        self._backend.record_call(
            CallRecord(
                time=iso_ms(self._backend.now()),
                method=request.method,
                path=request.url.path,
                status=0 if outcome.response is None else outcome.response.status_code,
                server_id=params.get("server_id"),
                volume_id=params.get("volume_id") or outcome.volume_id,
                job_id=params.get("job_id") or outcome.job_id,
                error_code=outcome.error_code,
                request_id=request_id(request),
                fault=outcome.fault,
                reached_backend=outcome.reached_backend,
            )
        )

    async def not_found(self, request: Request, exc: Exception) -> Response:
        """Any unknown path or method: the gateway's 404 (ledgered unless admin)."""
        response = gateway_error(request, 404, "APIGW.0101", API_NOT_FOUND)
        if not request.url.path.startswith("/_emulator/"):
            self.record(request, _Outcome(response, "APIGW.0101", reached_backend=False))
        return response

    # -- handlers --------------------------------------------------------------------------

    def detach_volume(self, call: ApiCall) -> ApiResult:
        """``DELETE …/cloudservers/{server_id}/detachvolume/{volume_id}``."""
        job = self._backend.detach_volume(
            call.project_id,
            call.params["server_id"],
            call.params["volume_id"],
            call.query.get("delete_flag"),
        )
        return ApiResult({"job_id": job.id})

    def attach_volume(self, call: ApiCall) -> ApiResult:
        """``POST …/cloudservers/{server_id}/attachvolume``."""
        try:
            body = _AttachBody.model_validate_json(call.body or b"{}")
        except ValidationError as exc:
            raise invalid_parameter(f"request body: {_first_error(exc)}") from None
        attachment = body.volume_attachment
        job = self._backend.attach_volume(
            call.project_id, call.params["server_id"], attachment.volume_id, attachment.device
        )
        return ApiResult({"job_id": job.id}, volume_id=attachment.volume_id)

    def get_job(self, call: ApiCall) -> ApiResult:
        """``GET /v1/{project_id}/jobs/{job_id}``."""
        return ApiResult(job_view(self._backend.get_job(call.project_id, call.params["job_id"])))

    def get_server(self, call: ApiCall) -> ApiResult:
        """``GET …/cloudservers/{server_id}``."""
        detail = self._backend.get_server(call.project_id, call.params["server_id"])
        return ApiResult({"server": server_view(detail)})

    def list_servers(self, call: ApiCall) -> ApiResult:
        """``GET …/cloudservers/detail`` with ``limit``, ``offset`` (a page), ``name``, ``status``."""
        count, page = self._backend.list_servers(
            call.project_id,
            name=call.query.get("name"),
            status=call.query.get("status"),
            limit=_int_query(call, "limit", 25),
            offset=_int_query(call, "offset", 1),
        )
        return ApiResult({"count": count, "servers": [server_view(d) for d in page]})

    def list_block_devices(self, call: ApiCall) -> ApiResult:
        """``GET …/cloudservers/{server_id}/block_device``."""
        detail = self._backend.get_server(call.project_id, call.params["server_id"])
        free_scsi, free_blk, free_disk = detail.free_slots()
        return ApiResult(
            {
                "attachableQuantity": {
                    "free_scsi": free_scsi,
                    "free_blk": free_blk,
                    "free_disk": free_disk,
                },
                "volumeAttachments": [block_device_view(v) for v in detail.volumes],
            }
        )

    def get_block_device(self, call: ApiCall) -> ApiResult:
        """``GET …/cloudservers/{server_id}/block_device/{volume_id}``."""
        attached = self._backend.get_attachment(
            call.project_id, call.params["server_id"], call.params["volume_id"]
        )
        return ApiResult({"volumeAttachment": block_device_view(attached)})

    def show_volume(self, call: ApiCall) -> ApiResult:
        """EVS ``GET /v2/{project_id}/cloudvolumes/{volume_id}``."""
        detail = self._backend.get_volume(call.project_id, call.params["volume_id"])
        return ApiResult({"volume": volume_view(detail)})


# -- the unsigned admin API --------------------------------------------------------------------


class _FailurePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error_code: str = Field(min_length=1)
    fail_reason: str


class _VolumePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    detach_fails_with: _FailurePatch | None = None
    job_duration_s: float | None = Field(default=None, ge=0)


def admin_error(request: Request, status: int, message: str) -> Response:
    """An admin API error."""
    code = "Emulator.NotFound" if status == 404 else "Emulator.BadRequest"
    return json_response(request, {"error": {"code": code, "message": message}}, status)


def _fault_view(fault: VolumeFault) -> dict[str, Any]:
    failure = fault.detach_fails_with
    return {
        "detach_fails_with": asdict(failure) if failure else None,
        "job_duration_s": fault.job_duration_s,
    }


def state_view(snapshot: Snapshot) -> dict[str, Any]:
    """Everything the backend holds, as JSON."""
    return {
        "now": iso_ms(snapshot.now),
        "config": snapshot.config.model_dump(),
        "credentials": list(snapshot.credentials),
        "servers": [{"project_id": d.server.project_id, **server_view(d)} for d in snapshot.servers],
        "volumes": [asdict(volume) for volume in snapshot.volumes],
        "attachments": [asdict(v.attachment) for d in snapshot.servers for v in d.volumes],
        "jobs": [
            {"project_id": job.project_id, "volume_id": job.volume_id, **job_view(job)}
            for job in snapshot.jobs
        ],
        "faults": {volume_id: _fault_view(f) for volume_id, f in snapshot.faults.items()},
    }


def ledger_summary(calls: Sequence[CallRecord], detaches: Sequence[DetachRecord]) -> dict[str, Any]:
    """Counts over the ledger: calls per status (``"0"``: no answer) and per injected fault kind
    (``"none"``: no fault), calls that reached ECS, detach calls (``DELETE …/detachvolume/…``)
    in all, that reached ECS and that started a job, and detaches that took effect."""
    detach_calls = [c for c in calls if c.method == "DELETE" and DETACH_PATH.search(c.path)]
    return {
        "calls": len(calls),
        "by_status": dict(Counter(str(c.status) for c in calls)),
        "by_fault": dict(Counter(c.fault or "none" for c in calls)),
        "reached_backend": sum(c.reached_backend for c in calls),
        "detach_calls": {
            "total": len(detach_calls),
            "reached_backend": sum(c.reached_backend for c in detach_calls),
            "jobs_started": sum(c.job_id is not None for c in detach_calls),
        },
        "detaches": len(detaches),
    }


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.body() or b"{}")
    except (ValueError, RecursionError):
        raise ValueError("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


class AdminApi:
    """``/_emulator/…``: state, reset, configuration, fault injection and the call ledger."""

    def __init__(self, backend: EcsBackend) -> None:
        self._backend = backend

    async def state(self, request: Request) -> Response:
        """``GET /_emulator/state``."""
        return json_response(request, state_view(self._backend.snapshot()))

    async def reset(self, request: Request) -> Response:
        """``POST /_emulator/reset``: reload the seed (the configuration is kept)."""
        self._backend.reset()
        return json_response(request, state_view(self._backend.snapshot()))

    async def patch_config(self, request: Request) -> Response:
        """``PATCH /_emulator/config`` with any ``EmulatorConfig`` fields."""
        try:
            config = self._backend.update_config(await _json_object(request))
        except ValueError as exc:
            return admin_error(request, 400, str(exc))
        return json_response(request, config.model_dump())

    async def patch_volume(self, request: Request) -> Response:
        """``PATCH /_emulator/volumes/{volume_id}``: fields given replace, null clears."""
        volume_id = request.path_params["volume_id"]
        try:
            patch = _VolumePatch.model_validate(await _json_object(request))
        except ValueError as exc:
            return admin_error(request, 400, str(exc))
        try:
            fault = self._backend.volume_fault(volume_id)
        except KeyError:
            return admin_error(request, 404, f"volume {volume_id} not found")
        if "detach_fails_with" in patch.model_fields_set:
            failure = patch.detach_fails_with
            fault = replace(
                fault,
                detach_fails_with=JobFailure(failure.error_code, failure.fail_reason) if failure else None,
            )
        if "job_duration_s" in patch.model_fields_set:
            fault = replace(fault, job_duration_s=patch.job_duration_s)
        self._backend.set_volume_fault(volume_id, fault)
        return json_response(request, {"volume_id": volume_id, **_fault_view(fault)})

    async def calls(self, request: Request) -> Response:
        """``GET /_emulator/calls``: every API call, every detach that took effect, a summary."""
        calls, detaches = self._backend.ledger()
        return json_response(
            request,
            {
                "calls": [asdict(c) for c in calls],
                "detaches": [asdict(d) for d in detaches],
                "summary": ledger_summary(calls, detaches),
            },
        )

    async def get_faults(self, request: Request) -> Response:
        """``GET /_emulator/faults``: the injected faults."""
        return json_response(request, self._backend.config.faults.model_dump(mode="json"))

    async def put_faults(self, request: Request) -> Response:
        """``PUT /_emulator/faults``: replace the injected faults (``emulator.faults``)."""
        try:
            faults = FaultConfig.model_validate(await _json_object(request))
        except ValidationError as exc:
            return admin_error(request, 400, describe_errors(exc))
        except ValueError as exc:
            return admin_error(request, 400, str(exc))
        return json_response(request, self._backend.set_faults(faults).model_dump(mode="json"))

    async def delete_faults(self, request: Request) -> Response:
        """``DELETE /_emulator/faults``: inject nothing."""
        return json_response(request, self._backend.set_faults(FaultConfig()).model_dump(mode="json"))


async def internal_error(request: Request, exc: Exception) -> Response:
    """An unexpected exception: ECS's internal-error shape (``Ecs.0615``)."""
    return ecs_error(request, EcsError(500, "Ecs.0615", "internal error"))
