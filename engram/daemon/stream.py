"""WebSocket ``/v1/stream``: streaming ingest with orchard9/engram's message names.

    client -> {"type": "init", "memory_space_id": "default"}
    server <- {"type": "init_ack", "session_id": ..., "initial_sequence": 0, "capabilities": {...}}
    client -> {"type": "observation", "sequence_number": 0,
               "episode": {"embedding": [...], "what": "text", "encoding_confidence": 0.9}}
    server <- {"type": "ack", "sequence_number": 0, "status": "committed", "memory_id": 17, "committed_at": ...}
    server <- {"type": "flow_control", "action": "pause" | "resume", "retry_after": 0.05}
    client -> {"type": "close"}

Each observation is put on a stream of the session's space (engram/ingest/stream.py)
and acknowledged, in order, once it is durable: an ack means what remember's return
means. When the lane is full the observation is refused, not queued: the server answers
``ack`` with status "rejected" and a ``flow_control`` pause with retry_after, then a
resume; the client sends it again. Nothing acknowledged is lost and nothing refused is
half-stored. A message that is not valid gets an ``error`` and changes nothing.
"""
from __future__ import annotations

import asyncio
import time
import uuid

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from engram import errors, validate
from engram.daemon.common import Route, Service, rfc3339

MAX_PENDING = 10_000      # observations put and not yet acknowledged, per session


def routes(service: Service) -> APIRouter:
    router = APIRouter(route_class=Route)
    eng = service.engine

    @router.websocket("/v1/stream")
    async def stream(ws: WebSocket):
        await ws.accept()
        session = uuid.uuid4().hex
        send_lock = asyncio.Lock()

        async def send(msg: dict) -> None:
            async with send_lock:
                await ws.send_text(orjson.dumps(msg, option=orjson.OPT_SERIALIZE_NUMPY).decode())

        async def error(message: str, seq=None) -> None:
            await send({"type": "error", "session_id": session, "message": message, "sequence_number": seq})

        try:
            first = await ws.receive_json()
        except (WebSocketDisconnect, ValueError):
            return
        if not isinstance(first, dict) or first.get("type") != "init":
            await error("the first message must be {\"type\": \"init\", \"memory_space_id\": ...}")
            return await ws.close(1008)
        try:
            name = validate.space_name(first.get("memory_space_id") or "default")
            st = await service.run(lambda: eng.space(name).stream("normal"))
        except errors.EngramError as e:
            await error(str(e))
            return await ws.close(1008)
        lane_cap = eng.ingest_stats()["capacity"]["normal"]
        await send({"type": "init_ack", "session_id": session, "initial_sequence": 0,
                    "capabilities": {"max_observations_per_second": 0, "queue_capacity": lane_cap,
                                     "supports_backpressure": True, "supports_snapshot_isolation": False,
                                     "dim": eng.dim}})
        pending: asyncio.Queue = asyncio.Queue(MAX_PENDING)

        async def acker():
            while True:
                first_item = await pending.get()
                if first_item is None:
                    return
                items = [first_item]
                while not pending.empty() and len(items) < 1000:
                    nxt = pending.get_nowait()
                    if nxt is None:
                        await settle(items)
                        return
                    items.append(nxt)
                await settle(items)

        async def settle(items: list) -> None:
            def wait():
                out = []
                for seq_no, batch in items:
                    try:
                        out.append((seq_no, int(st.settle(batch)[0]), None))
                    except errors.EngramError as e:
                        out.append((seq_no, None, e))
                return out
            for seq_no, mid, e in await service.run(wait):
                if e is None:
                    await send({"type": "ack", "session_id": session, "sequence_number": seq_no,
                                "status": "committed", "memory_id": mid, "committed_at": rfc3339(time.time_ns())})
                else:
                    await send({"type": "ack", "session_id": session, "sequence_number": seq_no,
                                "status": "failed", "error": type(e).__name__, "message": str(e)})

        ack_task = asyncio.create_task(acker())
        paused_until = 0.0
        try:
            while True:
                try:
                    msg = await ws.receive_json()
                except ValueError:
                    await error("a message must be a JSON object")
                    continue
                kind = msg.get("type") if isinstance(msg, dict) else None
                if kind == "close":
                    break
                if kind == "flow_control":
                    continue                     # the client pausing us: we only ever answer
                if kind != "observation":
                    await error(f"unknown message type {kind!r}: init, observation, flow_control or close")
                    continue
                seq_no = msg.get("sequence_number")
                ep = msg.get("episode")
                if not isinstance(seq_no, int) or not isinstance(ep, dict) or "embedding" not in ep:
                    await error("an observation has an integer sequence_number and an episode with an embedding",
                                seq_no)
                    continue
                try:
                    batch = st.submit([ep["embedding"]], [ep.get("what")],
                                      None if ep.get("encoding_confidence") is None else [ep["encoding_confidence"]])
                except errors.OverloadError as e:
                    await send({"type": "ack", "session_id": session, "sequence_number": seq_no,
                                "status": "rejected", "retry_after": e.retry_after})
                    if time.monotonic() >= paused_until:
                        paused_until = time.monotonic() + e.retry_after
                        await send({"type": "flow_control", "session_id": session, "action": "pause",
                                    "retry_after": e.retry_after})
                        asyncio.get_running_loop().call_later(e.retry_after, lambda: asyncio.ensure_future(
                            send({"type": "flow_control", "session_id": session, "action": "resume"})))
                    continue
                except errors.EngramError as e:
                    await error(f"{type(e).__name__}: {e}", seq_no)
                    continue
                await pending.put((seq_no, batch))
        except WebSocketDisconnect:
            pass
        finally:
            await pending.put(None)
            try:
                await ack_task              # acknowledged, or at least applied, before the session ends
            except Exception:               # the socket went away while acknowledging: still applied
                pass
        try:
            await ws.close()
        except RuntimeError:
            pass

    return router
