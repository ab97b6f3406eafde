"""The worker process: poll workers on the jobs topic, optionally detach workers on a requests
topic, the outbox relay, and ``/healthz``, ``/metrics`` and the web console (``/console``) on a
small HTTP server. Stops by draining: no new deliveries are taken, the ones in flight finish
and are settled."""

from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from handler.entry.runtime import Runtime
from handler.local._serve import BackgroundServer
from handler.local.console import Console, starlette_route
from handler.local.metrics import WorkerMetrics
from handler.local.worker import (
    RelayWorker,
    Worker,
    detach_request,
    forwarders,
    notify_event,
    poll_job,
    relay_worker,
)
from handler.topics import Topic
from handler.topics.push import PushTopic

STALE_AFTER_S = 60.0  # no successful receive for this long: the broker is not answering


class WorkerService:
    def __init__(
        self,
        runtime: Runtime,
        *,
        concurrency: int,
        requests: Topic | None = None,
        notify: bool = False,
        host: str = "127.0.0.1",
        health_port: int = 8088,
    ) -> None:
        self.metrics = WorkerMetrics()
        budget_s = runtime.settings.worker_budget_s()
        self.workers: list[Worker | RelayWorker] = [relay_worker(runtime)]
        self.workers += forwarders(runtime, budget_s=budget_s)
        if not isinstance(runtime.jobs, PushTopic):  # pushed jobs arrive at the webhook instead
            poll = poll_job(runtime)
            self.workers.append(
                Worker(runtime.jobs, poll, concurrency=concurrency, observer=self.metrics, budget_s=budget_s)
            )
        if requests is not None:
            handle = detach_request(runtime, requests)
            self.workers.append(
                Worker(
                    requests,
                    handle,
                    concurrency=concurrency,
                    observer=self.metrics,
                    budget_s=runtime.settings.worker_budget_s(),
                )
            )
        if notify:  # the results topic: a message per outcome to the chosen channels
            handle = notify_event(runtime, runtime.results)
            self.workers.append(
                Worker(runtime.results, handle, concurrency=1, observer=self.metrics, budget_s=budget_s)
            )
        self._console = Console.for_runtime(runtime)
        self._max_body_bytes = runtime.full_settings.max_body_bytes
        self._server = BackgroundServer(self._app(), host=host, port=health_port)

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> WorkerService:
        for worker in self.workers:
            worker.start()
        self._server.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        for worker in self.workers:
            worker.stop(timeout)
        self._server.stop()

    def healthy(self) -> bool:
        now = time.monotonic()
        return all(w.alive and now - w.last_receive_ok < STALE_AFTER_S for w in self.workers)

    def _app(self) -> Starlette:
        async def healthz(_: Request) -> Response:
            ok = self.healthy()
            return JSONResponse({"status": "ok" if ok else "unhealthy"}, status_code=200 if ok else 503)

        async def metrics(_: Request) -> Response:
            body, content_type = self.metrics.render()
            return Response(body, media_type=content_type)

        return Starlette(
            routes=[
                Route("/healthz", healthz, methods=["GET"]),
                Route("/metrics", metrics, methods=["GET"]),
                *starlette_route(self._console, self._max_body_bytes),
            ]
        )
