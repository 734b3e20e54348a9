"""The public face of one memory space: SpaceView (read) and Space (the owner's: read and write).

Every public method checks all of its input here, once, before anything
changes; what it calls below takes trusted, typed arguments. A rejected call
leaves the space exactly as it was.
"""
from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np

from engram import validate
from engram.cognition import interference
from engram.cognition.priming import Primer
from engram.config import FAN_MODES, InterferenceConfig, RecallConfig
from engram.errors import ClosedError, InvalidInputError, UnknownIdError, shown
from engram.ingest import Stream
from engram.owned import Owned
from engram.recall import pipeline
from engram.recall.context import RecallContext
from engram.recall.paths import strongest_path
from engram.recall.reader import SpaceReader
from engram.results import Memories, RecallResult, SpreadResult

ROUTINGS = ("auto", "workers")
ORIGINS = np.array(["seed", "spread"])      # RecallResult.origin by whether spreading reached it


class SpaceView:
    """Read access to a memory space: an attached reader's, and the owner Space's base."""

    def __init__(self, reader: SpaceReader, context: RecallContext | None = None, closed_check=None):
        self._reader = reader
        self._ctx = context or RecallContext()
        self._closed_check = closed_check
        self.name, self.dim = reader.name, reader.dim

    @property
    def clock(self):
        """Wall-clock ns source of access times, retention, priming and reconsolidation."""
        return self._ctx.clock

    @clock.setter
    def clock(self, fn) -> None:
        self._ctx.clock = fn

    def _open(self) -> SpaceReader:
        if self._closed_check is not None:
            self._closed_check()
        if not self._reader.store.segs:
            raise ClosedError(f"memory space {self.name!r} is closed")
        self._reader.refresh()
        return self._reader

    def __len__(self) -> int:
        return len(self._open())

    def _live_ids(self, ids) -> np.ndarray:
        """ids (one or a sequence) as int64, each naming a live memory."""
        r = self._open()
        a = validate.ids(ids)
        bad = r.unknown(a)
        if bad.any():
            wrong = a[bad][:5].tolist()
            raise UnknownIdError(f"unknown or forgotten memory ids {wrong} in space {self.name!r} "
                                 f"(ids are 0..{r.n_nodes - 1}; forgotten ones are gone)")
        return a

    def _one_id(self, memory_id) -> int:
        a = self._live_ids(memory_id)
        if a.shape[0] != 1:
            raise InvalidInputError(f"pass one memory id, got {a.shape[0]}")
        return int(a[0])

    def live_ids(self, offset: int = 0, limit: int | None = None) -> np.ndarray:
        """The ids of live memories, ascending: ``limit`` of them after the first ``offset``."""
        every = np.arange(self._open().n_nodes, dtype=np.int64)
        live = every[~self._reader.unknown(every)]
        return live[validate.positive_int(offset, "offset"):None if limit is None else offset + limit]

    def get(self, ids) -> Memories:
        """The memories ``ids`` (one or a sequence), in the order asked."""
        return self._reader.memories(self._live_ids(ids))

    def neighbors(self, memory_id: int):
        """(ids, weights) of the memories this one links to."""
        return self._reader.neighbors(self._one_id(memory_id))

    def recall(self, query, k: int = 10, spread: bool = True, budget_ms: float | None = 10.0) -> RecallResult:
        """The k memories that best answer ``query``: similarity seeds, then spreading
        activation along associations within ``budget_ms`` (None: no budget). See
        engram/recall/pipeline.py for the pipeline and RecallResult for what comes back."""
        t0 = time.perf_counter_ns()
        r = self._open()
        q = validate.query(query, self.dim)
        k = validate.positive_int(k, "k", 1)
        if not isinstance(spread, (bool, np.bool_)):
            raise InvalidInputError(f"spread must be True or False, got {shown(spread)}")
        if budget_ms is not None:
            budget_ms = validate.positive_float(budget_ms, "budget_ms")
        self._before_spread(spread)
        trace_id = self._ctx.events.trace_id()
        ranked = self._ranked(q, k, bool(spread), budget_ms, t0, trace_id)
        rec = r.hot()[ranked.ids]
        self._after_recall(ranked)
        total_ns = time.perf_counter_ns() - t0
        ranked.timings["total_ms"] = total_ns / 1e6
        self._recorded(ranked, k, t0, total_ns, trace_id)
        return RecallResult(
            ids=ranked.ids, scores=ranked.scores, confidence=rec["confidence"].copy(),
            origin=ORIGINS[(ranked.hops != 0).view(np.uint8)], hops=ranked.hops,
            content=r.content(rec["content_ref"]), partial=ranked.partial, fallback=ranked.fallback,
            activation=ranked.activation, similarity=ranked.similarity, timings=ranked.timings,
            spreading=ranked.info)

    def _ranked(self, q, k: int, spread: bool, budget_ms, t0: int, trace_id: int):
        """The recall pipeline, run in this thread."""
        return pipeline.recall(self._reader, self._ctx, q, k, spread=spread, budget_ms=budget_ms, t_begin=t0,
                               trace_id=trace_id)

    def _recorded(self, ranked, k: int, t_begin: int, total_ns: int, trace_id: int) -> None:
        """Readers record nothing; the owner's Space counts and traces each recall."""

    def spread(self, seeds, max_depth: int | None = None, decay: float | None = None,
               threshold: float | None = None, cycle_penalty: float | None = None,
               fan: str | None = None) -> SpreadResult:
        """Spreading alone: ``ids, activation = mem.spread({seed_id: 1.0, ...})``.

        seeds: a {id: activation} mapping, or ids (activation 1.0 each). Parameters
        left None take the space's recall configuration; fan: "none" | "source" |
        "target" | "both" (engram/cognition/fan.py). Returns every live memory
        touched, most active first (ties by id): a SpreadResult (ids, activation, hops).
        """
        if isinstance(seeds, dict):
            ids = self._live_ids(list(seeds.keys()))
            act = validate.per_item(list(seeds.values()), ids.shape[0], "seed activation", 1.0, 0.0, 1.0)
        else:
            ids = self._live_ids(seeds)
            act = np.ones(ids.shape[0], np.float32)
        cfg = self._ctx.config
        p = cfg.spread          # checked when configured; a call's own rules are checked here
        given = {"max_depth": max_depth, "decay": decay, "threshold": threshold, "cycle_penalty": cycle_penalty}
        if any(v is not None for v in given.values()):
            p = replace(p, **{k: v for k, v in given.items() if v is not None}).check()
        fan = cfg.fan if fan is None else fan
        if fan not in FAN_MODES:
            raise InvalidInputError(f"fan must be one of {', '.join(FAN_MODES)}, got {shown(fan)}")
        self._before_spread(True)
        return SpreadResult(*self._reader.spread(fan, ids, act, p))

    def path(self, sources, target: int, max_hops: int = 4) -> list:
        """The associations that lead from any of ``sources`` to ``target``: the fewest hops
        (at most ``max_hops``), and among those the largest product of link weights (as
        recall spreads over them: with the configured fan discount), as a list of memory ids
        from a source to the target ([] if none within reach). This is the strongest way a
        spread result was reached: ``mem.path(seed_ids, res.ids[i])``."""
        src = self._live_ids(sources)
        tgt = self._one_id(target)
        hops = validate.positive_int(max_hops, "max_hops", 1)
        self._before_spread(True)
        return strongest_path(self._reader.links(self._ctx.config.fan).csr, src, tgt, hops)

    def _before_spread(self, spread: bool) -> None:
        """Readers spread over the compacted links only; the owner compacts first."""

    def configure_recall(self, **changes) -> RecallConfig:
        """Change recall's tunables by name (engram.config.RecallConfig); returns the new
        settings. With no arguments, returns the settings in force."""
        self._ctx.config = self._ctx.config.with_changes(**changes)
        return self._ctx.config

    def spreading_stats(self, reset: bool = False) -> dict:
        """The latency predictor's error distribution and the batcher's state in this process
        (reset: then forget the errors seen so far, to measure the next run alone)."""
        return self._ctx.stats(reset)

    def _after_recall(self, ranked) -> None:
        """Readers cannot record access or priming; the owner's Space does."""

    def stats(self) -> dict:
        return self._open().stats()

    def __repr__(self):
        return f"<engram space {self.name!r} dim={self.dim}>"


class Space(SpaceView):
    """A memory space owned by this process: read and write."""

    def __init__(self, owned: Owned, closed_check, workers=None, routing: str = "auto", ingest=None):
        super().__init__(owned.reader, owned.context, closed_check)
        self._owned = owned
        self._store = owned.store
        self._rec, self._events = owned.metrics, owned.context.events
        self._lock = owned.lock          # one writer at a time within the owner
        self._changes = owned.changes
        self._workers = workers          # engram.workers.supervisor.WorkerPool, or None: recall in-process
        self._routing = routing
        self._ingest = ingest            # () -> the engine's engram.ingest.IngestPool (started on first use)
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self._primer = Primer(owned.reader.graph, self._link_trusted, owned.changes.reweight)

    def _ranked(self, q, k: int, spread: bool, budget_ms, t0: int, trace_id: int):
        # "auto": a lone caller runs the pipeline in its own thread (a round trip to a
        # worker costs more than it saves); callers beyond the first go to the workers,
        # so concurrent recalls run in parallel instead of taking turns at the GIL.
        with self._inflight_lock:
            busy = self._inflight
            self._inflight += 1
        try:
            w = self._workers
            if w is not None and (busy or self._routing == "workers"):
                r = w.recall(self.name, q, k, spread, budget_ms, self._ctx.config, t0, trace_id)
                if r is not None:        # None: workers starting, broken, or every slot busy
                    return r
            # idle workers may gather batches of this thread's large hops (work stealing)
            self._ctx.splitter = w.splitter() if w is not None else None
            return super()._ranked(q, k, spread, budget_ms, t0, trace_id)
        finally:
            with self._inflight_lock:
                self._inflight -= 1

    def _recorded(self, ranked, k: int, t_begin: int, total_ns: int, trace_id: int) -> None:
        rec = self._rec
        rec.recalls_total.inc()
        rec.recall_latency_seconds.observe_ns(total_ns)
        if ranked.partial:
            rec.recall_partial_total.inc()
        if ranked.fallback:
            rec.recall_fallback_total.inc()
        hops = (ranked.info or {}).get("hops", 0)
        if hops:
            rec.spread_hops_total.inc(hops)
            rec.spread_latency_seconds.observe_ns(int(ranked.timings.get("spread_ms", 0.0) * 1e6))
        self._events.recall(trace_id, k, ranked.ids, ranked.hops, ranked.scores, t_begin, total_ns)

    def remember(self, vectors, content=None, confidence=None, tier: str = "hot") -> np.ndarray:
        """Store memories; returns their int64 ids once durable (with a path, under the
        engine's durability policy). ``tier``: "hot" (f32) or "warm" (f16)."""
        t_call = time.perf_counter_ns()
        ids, lsn = self._store_checked(*self._checked(vectors, content, confidence, tier))
        self._durable(lsn)
        self._rec.remember_latency_seconds.observe_ns(time.perf_counter_ns() - t_call)
        return ids

    def _checked(self, vectors, content, confidence, tier):
        return validate.observations(vectors, self.dim, content, confidence, tier)

    def _store_checked(self, v: np.ndarray, tier: int, texts: list, conf: np.ndarray):
        """(ids, lsn) of a checked batch stored and logged (not waited for): remember's, and
        the ingest workers' for a stream."""
        with self._lock:
            r = self._open()
            self._changes.admit()
            cfg = self._owned.interference
            hit = interference.find(self._store, r.kern, v, cfg)
            if hit is not None:     # weakens conf (not yet stored) and the old memories' records
                interfered = interference.apply(hit, cfg, conf, self._store.n_nodes, self._store.hot())
            ids, lsn = self._changes.remember(v, tier, texts, conf, self.clock())
            if hit is not None:
                self._changes.state(interfered[1][0])
        self._rec.remembered_total.inc(v.shape[0])
        self._rec.memories.set(self._store.n_live)
        trace_id = self._events.remember(int(ids[0]), v.shape[0])
        if hit is not None:
            for kind, (weakened, partner, c, sim) in zip(("proactive", "retroactive"), interfered):
                if weakened.size:
                    self._rec.interference_total[kind].inc(int(weakened.size))
                self._events.interference(trace_id, weakened, partner, c, sim)
        return ids, lsn

    def stream(self, lane: str = "normal") -> Stream:
        """A stream into this space whose put() returns at once (engram/ingest/stream.py);
        lane: "high", "normal" or "low", each bounded (full: OverloadError, retry-after)."""
        self._open()
        return Stream(self._ingest(), lane, self._checked, self._store_checked, self._durable, self.name)

    def _durable(self, lsn: int) -> None:
        """Return once the change logged at ``lsn`` is acknowledged (0: nothing was logged)."""
        if lsn:
            self._changes.log.wait(lsn)

    def _configured(self, configure):
        """Run a change of settings and log the settings that result."""
        with self._lock:
            self._changes.admit()
            out = configure()
            lsn = self._changes.settings(self._owned.settings())
        self._durable(lsn)
        return out

    def configure_recall(self, **changes) -> RecallConfig:   # (SpaceView's, logged)
        if not changes:
            return self._ctx.config
        return self._configured(lambda: super(Space, self).configure_recall(**changes))

    def configure_interference(self, **changes) -> InterferenceConfig:
        """Switch and tune interference at remember time (engram/cognition/interference.py):
        proactive, retroactive, threshold, proactive_rate, retroactive_rate, floor, competitors."""
        def configure():
            self._owned.interference = self._owned.interference.with_changes(**changes)
            return self._owned.interference
        return self._configured(configure) if changes else self._owned.interference

    def configure_reconsolidation(self, **changes):
        """Tune the reconsolidation window and plasticity (engram/cognition/reconsolidation.py):
        opens_after_s, closes_after_s, min_age_s, peak_plasticity, history."""
        if not changes:
            return self._owned.labile.config
        return self._configured(lambda: self._owned.labile.configure(**changes))

    def reconsolidate(self, memory_id, vector=None, content=None, confidence=None) -> float:
        """Update a memory inside the window its last recall opened (docs/cognitive.md),
        weighted by the plasticity there, which is returned. The replaced version is kept
        (versions()); outside the window a ReconsolidationWindowError says why."""
        labile = self._owned.labile
        with self._lock:
            current = self.get(self._one_id(memory_id))
            self._changes.admit()
            update = labile.plan(self._store, current, vector, content, confidence, self.clock())
            lsn = self._changes.reconsolidate(update)
        self._durable(lsn)
        i, p = update.memory_id, update.plasticity
        self._rec.reconsolidation_total.inc()
        self._events.reconsolidation(i, len(labile.versions(i)), p)
        return p

    def versions(self, memory_id) -> list:
        """The memory's versions replaced by reconsolidation, oldest first (Version records)."""
        with self._lock:
            return self._owned.labile.versions(self._one_id(memory_id))

    def link(self, src, dst, weights=1.0) -> int:
        """Associate src -> dst with weight in (0, 1]; scalars broadcast. Returns links added."""
        with self._lock:
            s, d = self._live_ids(src), self._live_ids(dst)
            if s.shape[0] != d.shape[0] and 1 not in (s.shape[0], d.shape[0]):
                raise InvalidInputError(f"src has {s.shape[0]} ids and dst {d.shape[0]}: "
                                        "pass equal lengths or one id")
            s, d = (np.repeat(x, max(s.shape[0], d.shape[0]) // x.shape[0]) for x in (s, d))
            w = validate.per_item(weights, s.shape[0], "weights", 1.0, 0.0, 1.0, lo_open=True)
            self._changes.admit()
            self._primer.forget_pending(s, d)
            n, lsn = self._link_trusted(s, d, w)
        self._durable(lsn)
        return n

    def _link_trusted(self, s: np.ndarray, d: np.ndarray, w: np.ndarray):
        """(links added, LSN) for ids and weights already checked (priming's co-recall links
        too, which nobody waits for)."""
        with self._lock:
            lsn = self._changes.link(s, d, w)
        self._rec.links_total.inc(int(s.shape[0]))
        self._events.link(int(s[0]), int(d[0]), int(s.shape[0]), float(w[0]))
        return int(s.shape[0]), lsn

    def forget(self, ids) -> int:
        """Forget memories (all or none): they leave recall, get and links. Returns how many."""
        with self._lock:
            a = np.unique(self._live_ids(ids))
            self._changes.admit()
            lsn = self._changes.forget(a)
        self._durable(lsn)
        self._rec.forgotten_total.inc(int(a.shape[0]))
        self._rec.memories.set(self._store.n_live)
        self._events.forget(int(a[0]), int(a.shape[0]))
        return int(a.shape[0])

    def _before_spread(self, spread: bool) -> None:
        # spreading runs over the CSR: merge pending links first (once per batch of links)
        if spread and self._store.count("delta"):
            with self._lock:
                if self._store.count("delta"):
                    self._reader.graph.compact()

    def compact(self) -> int:
        """Merge pending links into the CSR now; returns the number of live links."""
        with self._lock:
            self._open()
            self._primer.flush()
            return self._reader.graph.compact()

    def _after_recall(self, ranked) -> None:
        # The access update needs the lock, but a recall does not wait for a writer that
        # holds it (an ingest batch): it runs now if the lock is free, else when the writer
        # lets go, before anyone else takes the lock (SpaceLock.defer).
        ids, cfg, now = ranked.ids.copy(), self._ctx.config, self.clock()
        if not ids.shape[0]:
            return
        if cfg.fan != "none" and not ranked.fallback and ranked.info and ranked.info.get("hops"):
            # fan interference: each directly matched memory whose several associations
            # divided its activation among them (ACT-R's fan effect, engram/cognition/fan.py)
            fanned = int(np.count_nonzero(self._store.hot()["edge_count"][ids[ranked.hops == 0]] > 1))
            if fanned:
                self._rec.interference_total["fan"].inc(fanned)
        primed = tuple(a.copy() for a in ranked.primed) if cfg.priming and ranked.primed is not None else None
        self._lock.defer(lambda: self._accessed(ids, primed, now, cfg))

    def _accessed(self, ids: np.ndarray, primed, now: int, cfg) -> None:
        """A recall's access update (lock held): last access and count, priming's residuals
        and co-recall links; logged, not waited for. Nothing once the space is closed."""
        if not self._store.segs:
            return
        self._store.touch(ids, now)
        changed = ids
        if primed is not None:
            counts = self._primer.record(self._store.hot(), ids, primed, now, cfg)
            changed = np.concatenate([ids, primed[0].astype(np.int64), self._primer.pruned])
            for code, (kind, n) in enumerate(counts.items()):
                if n:
                    self._rec.priming_total[kind].inc(n)
                    self._events.priming(int(ids[0]), code, n)
        if self._changes.log is not None and self._changes.log.failed is None:
            self._changes.state(changed)
