"""The API's spaces, health and metrics routes."""
from __future__ import annotations

import time
from importlib.metadata import version

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from engram import validate
from engram.daemon import models as m
from engram.daemon.common import ERRORS, Route, Service, json_response, rfc3339
from engram.observe.attach.prometheus import EngramCollector


def routes(service: Service) -> APIRouter:
    router = APIRouter(route_class=Route)
    eng = service.engine

    # ---- spaces ----------------------------------------------------------------------
    def space_info(name: str) -> dict:
        st = eng.space(name).stats()
        return {"id": name, "dim": st["dim"], "memories": st["memories"], "links": st["links"]}

    @router.get("/api/v1/spaces", response_model=m.SpaceList, responses=ERRORS, summary="The memory spaces")
    async def spaces():
        return json_response({"spaces": await service.run(lambda: [space_info(n) for n in eng.spaces])})

    @router.post("/api/v1/spaces", status_code=201, response_model=m.SpaceInfo, responses=ERRORS,
              summary="Create a memory space (all spaces have the daemon's dim)")
    async def create_space(body: m.SpaceCreate):
        return json_response(await service.run(lambda: (eng.space(body.id), space_info(body.id))[1]), 201)

    @router.get("/api/v1/spaces/{space_id}", response_model=m.SpaceInfo, responses=ERRORS, summary="One memory space")
    async def get_space(space_id: m.SpaceIdPath):
        name = validate.space_name(space_id)
        return json_response(await service.run(lambda: (service.readable(name), space_info(name))[1]))

    # ---- health ----------------------------------------------------------------------
    @router.get("/health", response_model=m.Health, responses={503: {"model": m.Health}},
             summary="healthy, degraded (writes refused for now: disk full) or unhealthy (503)")
    async def health():
        h = eng.health()
        status = "unhealthy" if h["state"] in ("failed", "closed") else "degraded" if h["state"] == "full" else \
            "healthy"
        return json_response({"status": status, "service": "engram", "version": version("engram"),
                              "timestamp": rfc3339(time.time_ns()), "engine": eng.name,
                              "durability": eng.durability, "checks": [h], "recovery": eng.recovery},
                             503 if status == "unhealthy" else 200)

    @router.get("/health/alive", summary="200 while the process serves")
    async def alive():
        return json_response({"status": "alive"})

    @router.get("/health/spreading", summary="The spreading path: workers, latency predictor error, pool")
    async def health_spreading():
        stats = await service.run(lambda: (eng.worker_stats(), eng.spreading_metrics()))
        workers, spreading = stats
        ok = workers.get("workers", 0) == 0 or workers.get("alive", 0) > 0 or not workers.get("started", True)
        return json_response({"name": "spreading", "type": "spreading", "status": "healthy" if ok else "unhealthy",
                              "workers": workers, "metrics": spreading}, 200 if ok else 503)

    @router.get("/api/v1/system/health", summary="Per-space state: memories, ingest pressure, log lag")
    async def system_health():
        def work():
            ing = eng.ingest_stats()
            queued, cap = sum(ing["queued"].values()), sum(ing["capacity"].values())
            h = eng.health()
            return {"status": "healthy" if h["state"] == "ok" else h["state"], "timestamp": rfc3339(time.time_ns()),
                    "checks": [h], "ingest": ing,
                    "spaces": [{"space": n, "memories": len(eng.space(n)), "pressure": queued / cap if cap else 0.0,
                                "wal_lag_records": h.get("unsynced_records", 0),
                                "index": eng.space(n).stats()["index"]} for n in eng.spaces]}
        return json_response(await service.run(work))

    # ---- metrics ----------------------------------------------------------------------
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngramCollector(eng.name))

    def prometheus_text() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @router.get("/metrics", summary="Metrics: JSON (Engram's form), or Prometheus text when Accept asks for it",
                responses={200: {"content": {"application/json": {"schema": {"type": "object"}},
                                             "text/plain": {"schema": {"type": "string"}}}}})
    async def metrics(request: Request):
        accept = request.headers.get("accept", "")
        if "text/plain" in accept or "openmetrics" in accept:
            return await service.run(prometheus_text)

        def snapshot():
            return {"snapshot": {"engine": eng.name, "spaces": {n: eng.space(n).stats() for n in eng.spaces},
                                 "ingest": eng.ingest_stats(), "workers": eng.worker_stats(),
                                 "spreading": eng.spreading_metrics(), "http": service.stats()},
                    "export": "GET /metrics/prometheus (or Accept: text/plain) for the Prometheus form"}
        return json_response(await service.run(snapshot))

    @router.get("/metrics/prometheus", summary="Metrics in the Prometheus text format", response_class=Response,
                responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def metrics_prometheus():
        return await service.run(prometheus_text)

    return router
