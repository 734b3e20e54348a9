"""SpaceView: read access to one memory space (an attached reader's, and the base of the
owner's Space in engram/space/owner.py).

Every public method checks all of its input here, once, before anything
changes; what it calls below takes trusted, typed arguments. A rejected call
leaves the space exactly as it was.
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from engram import validate
from engram.config import FAN_MODES, RecallConfig
from engram.errors import ClosedError, InvalidInputError, NoEmbedderError, UnknownIdError, shown
from engram.recall import pipeline, published
from engram.recall.context import RecallContext
from engram.recall.paths import strongest_path
from engram.recall.reader import SpaceReader
from engram.results import Memories, RecallResult, SpreadResult

ORIGINS = np.array(["seed", "spread"])      # RecallResult.origin by whether spreading reached it


class SpaceView:
    """Read access to a memory space: an attached reader's, and the owner Space's base.
    A reader recalls with the settings the owner published (engram/recall/published.py)
    until it configures its own."""

    _follows_owner = True

    def __init__(self, reader: SpaceReader, context: RecallContext | None = None, closed_check=None):
        self._reader = reader
        self._ctx = context or RecallContext()
        self._closed_check = closed_check
        self.name, self.dim = reader.name, reader.dim
        self._settings_seen = 0

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
        if self._follows_owner and int(self._reader.store.dir[0]["recall_seq"][0]) != self._settings_seen:
            self._settings_seen, config = published.read(self._reader.store.dir, self.name)
            if config is not None:
                self._ctx.config = config
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

    def recall(self, query=None, k: int = 10, spread: bool = True, budget_ms: float | None = 10.0,
               text: str | None = None) -> RecallResult:
        """The k memories that best answer ``query`` (a vector) or ``text`` (a question, encoded
        by the engine's embedder first: timings["embed_ms"], outside the budget): similarity
        seeds, then spreading activation along associations within ``budget_ms`` (None: no
        budget). See engram/recall/pipeline.py and RecallResult for what comes back."""
        query, embed_ms = (query, 0.0) if text is None else self._text_query(query, text)
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
        ranked.timings["total_ms"] = total_ns / 1e6 + embed_ms
        if text is not None:
            ranked.timings["embed_ms"] = embed_ms
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

    def _text_query(self, query, text) -> tuple:
        """(vector, ms encoding it) for a recall by text."""
        raise NoEmbedderError(f"a reader of memory space {self.name!r} has no embedder: encode the text with "
                              "the owner's model and pass the vector")

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
        settings. With no arguments, returns the settings in force (a reader's: the owner's,
        until it changes its own here)."""
        if not changes:
            self._open()
            return self._ctx.config
        self._follows_owner = False
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
