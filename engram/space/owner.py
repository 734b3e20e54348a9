"""Space: the owner's face of one memory space, read and write (reads from SpaceView).

Every public method checks all of its input here, once, before anything
changes; what it calls below takes trusted, typed arguments. A rejected call
leaves the space exactly as it was.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from engram import validate
from engram.cognition import interference, tiering
from engram.cognition.priming import Primer
from engram.config import InterferenceConfig, RecallConfig
from engram.errors import InvalidInputError
from engram.ingest import Stream
from engram.owned import Owned
from engram.space.view import SpaceView
from engram.store.wal.format import RecordType
from engram.text.inspace import SpaceText

ROUTINGS = ("auto", "workers")
KEYED_CHANGES = {"remember": RecordType.REMEMBER, "link": RecordType.LINK, "forget": RecordType.FORGET}


class Space(SpaceView):
    """A memory space owned by this process: read and write."""

    _follows_owner = False          # it is the owner: its settings are the ones published

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
        self._text = SpaceText(owned, self.name, self._checked, self._store_checked)

    @property
    def embedded_by(self):
        """What made this space's vectors (an engram.text.Identity: name, version, dim), or
        None: no texts went in, or the vectors came from the caller."""
        return self._text.made_by()

    def _text_query(self, query, text) -> tuple:
        if query is not None:
            raise InvalidInputError("give query (a vector) or text, not both")
        return self._text.query(text)

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
                    # the index audit is the owner's (engram/recall/audit.py): it hears the
                    # query here, or a space whose recalls all go to workers is never audited
                    audit = self._reader.ann.audit
                    if audit is not None:
                        audit.offer(q)
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

    def remember(self, vectors=None, content=None, confidence=None, tier: str = "hot", texts=None,
                 progress=None, key=None) -> np.ndarray:
        """Store memories; returns their int64 ids once durable (with a path, under the
        engine's durability policy). ``tier``: "hot" (f32) or "warm" (f16). ``texts``
        instead of vectors: embedded by the engine's embedder (and kept as content unless
        content is given); progress: True (a bar on stderr) or an object with update(n).
        ``key``: an engram.store.keys.Key; a call with a key already used returns the first
        call's ids and stores nothing (keyed())."""
        t_call = time.perf_counter_ns()
        if texts is None:
            ids, lsn = self._store_checked(*self._checked(vectors, content, confidence, tier), key=key)
        else:
            ids, lsn = self._text.remember(vectors, texts, content, confidence, tier, progress, key)
        self._durable(lsn)
        self._rec.remember_latency_seconds.observe_ns(time.perf_counter_ns() - t_call)
        return ids

    def _checked(self, vectors, content, confidence, tier):
        return validate.observations(vectors, self.dim, content, confidence, tier)

    def _store_checked(self, v: np.ndarray, tier: int, texts: list, conf: np.ndarray, key=None):
        """(ids, lsn) of a checked batch stored and logged (not waited for): remember's, and
        the ingest workers' for a stream."""
        with self._lock:
            r = self._open()
            prior = self.keyed(key, "remember")
            if prior is not None:
                return np.arange(prior.first, prior.first + prior.count, dtype=np.int64), 0
            self._changes.admit()
            cfg = self._owned.interference
            hit = interference.find(self._store, r.kern, v, cfg)
            if hit is not None:     # weakens conf (not yet stored) and the old memories' records
                interfered = interference.apply(hit, cfg, conf, self._store.n_nodes, self._store.hot())
            ids, lsn = self._changes.remember(v, tier, texts, conf, self.clock(), key)
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

    def keyed(self, key, change: str):
        """What the ``change`` ("remember", "link" or "forget") guarded by ``key`` (an
        engram.store.keys.Key) did, once durable: an engram.store.keys.Result; None if the key
        guards no change (or None). IdempotencyKeyError if it guards another request."""
        if key is None:
            return None
        with self._lock:
            prior = self._changes.keys.prior(key, KEYED_CHANGES[change])
            log = self._changes.log
        if prior is not None and log is not None:    # it may still be on its way to the disk
            self._durable(log.last_lsn)
        return prior

    def _configured(self, configure):
        """Run a change of settings and log the settings that result."""
        with self._lock:
            self._changes.admit()
            out = configure()
            self._owned.settings_changed()
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

    def link(self, src, dst, weights=1.0, key=None) -> int:
        """Associate src -> dst with weight in (0, 1]; scalars broadcast. Returns links added
        (``key``: as remember's)."""
        with self._lock:
            prior = self.keyed(key, "link")
            if prior is not None:
                return prior.count
            s, d = self._live_ids(src), self._live_ids(dst)
            if s.shape[0] != d.shape[0] and 1 not in (s.shape[0], d.shape[0]):
                raise InvalidInputError(f"src has {s.shape[0]} ids and dst {d.shape[0]}: "
                                        "pass equal lengths or one id")
            s, d = (np.repeat(x, max(s.shape[0], d.shape[0]) // x.shape[0]) for x in (s, d))
            w = validate.per_item(weights, s.shape[0], "weights", 1.0, 0.0, 1.0, lo_open=True)
            self._changes.admit()
            self._primer.forget_pending(s, d)
            n, lsn = self._link_trusted(s, d, w, key)
        self._durable(lsn)
        return n

    def _link_trusted(self, s: np.ndarray, d: np.ndarray, w: np.ndarray, key=None):
        """(links added, LSN) for ids and weights already checked (priming's co-recall links
        too, which nobody waits for)."""
        with self._lock:
            lsn = self._changes.link(s, d, w, key)
        self._rec.links_total.inc(int(s.shape[0]))
        self._events.link(int(s[0]), int(d[0]), int(s.shape[0]), float(w[0]))
        return int(s.shape[0]), lsn

    def forget(self, ids, key=None) -> int:
        """Forget memories (all or none): they leave recall, get and links. Returns how many
        (``key``: as remember's)."""
        with self._lock:
            prior = self.keyed(key, "forget")
            if prior is not None:
                return prior.count
            a = np.unique(self._live_ids(ids))
            self._changes.admit()
            lsn = self._changes.forget(a, key)
        self._durable(lsn)
        self._rec.forgotten_total.inc(int(a.shape[0]))
        self._rec.memories.set(self._store.n_live)
        self._events.forget(int(a[0]), int(a.shape[0]))
        return int(a.shape[0])

    def migrate(self, ids, tier: str) -> int:
        """Move memories' vectors to ``tier`` ("hot" f32, "warm" f16, "cold" int8 with a
        scale per row: docs/scale.md); returns how many moved. Recall finds them there at
        once. Engine(tiering=...) does this in the background by recency and strength."""
        validate.tier_code(tier)
        with self._lock:
            a = np.unique(self._live_ids(ids))
            if tier == "warm":      # the one tier with a range: only then are the vectors read
                validate.fits_tier(self._store.vectors_of(a), tier)
        moved = self.migrate_checked(a, tier)
        self.tier_gauges()
        return moved

    def migrate_checked(self, ids: np.ndarray, tier: str) -> int:
        """migrate() of distinct ids known to have been issued (forgotten ones stay)."""
        with self._lock:
            if not self._store.segs:
                return 0
            self._changes.admit()
            moved, lsn = self._changes.migrate(ids, validate.TIER_CODES[tier])
        self._durable(lsn)
        self._rec.tier_migrations_total[tier].inc(moved)
        return moved

    def store_for_tiering(self):
        """The tables the tier keeper reads (None once closed)."""
        return self._store if self._store.segs else None

    def tier_gauges(self) -> None:
        for tier, n in tiering.counts(self._store.hot()).items():
            self._rec.tier_memories[tier].set(n)

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
            self._changes.state(changed, coalesce=True)
