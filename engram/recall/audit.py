"""How much of what an exact scan finds the approximate index finds, on the queries recall
really gets, and the search breadth that follows from it.

The index's recall depends on the data, not only on its size: on clustered dense vectors
the default breadth (ef 64 up to 100K) finds 0.99 of the exact top 10, but on the quality
suite's hashed word vectors (WordNet, 30K synsets, queries of a few words) it found 0.85,
and reaching 0.98 took ef 512 (docs/scale.md, "The audit"). So the owner audits: every
SAMPLE_EVERY-th recall that used the index leaves a copy of its query (not one it audited
lately in this index generation: a few repeated queries the index answers well made a
breadth that misses on others look safe), and the index
keeper's thread (engram/workers/indexer.py), at most once per ``max(MIN_GAP_S,
COST_RATIO x the last audit's cost)``, answers one of them exactly and at each breadth of
LADDER (and with the index's sketch, engram/recall/sketch.py, when its generation has
one), and keeps a moving average of each one's recall@K and time. After MIN_AUDITS the
space's search breadth is published in its directory (AnnState.breadth), where every
process's recall reads it:

- the cheapest of: the narrowest breadth whose recall reaches TARGET, the sketch if its
  recall reaches TARGET, and the exact scan (a small space of hard data: its scan costs
  less than a broad search); once one is chosen, another must cost at most SWITCH of it
  to replace it;
- if neither a breadth nor the sketch reaches TARGET: the exact scan when it costs at
  most EXACT_MAX_MS, else the breadth with the best recall.

An audit's exact answer is a full scan without a budget; COST_RATIO keeps the audits to
about 1/COST_RATIO of one core (at 1M x 768 one scan takes ~100 ms: one audit every 5 s).
An audit that leaves the choice as it was doubles the gap to the next, up to MAX_GAP_S; a
new choice or a new index generation starts again at MIN_GAP_S. An audit runs seven
searches, an exact scan among them, beside the recalls it serves: at 500 recalls/s on 10K
memories the daemon's P99 was 4.5-5.4 ms with one every 0.5 s and 3.3-4.2 ms without
them (docs/operations/http.md), and a settled choice needs few of them.
"""
from __future__ import annotations

import time
from collections import deque

import numpy as np

from engram.recall.ann import BREADTH_NAMES, EXACT, SKETCH, expansion, wanted

LADDER = (64, 128, 256, 512, 1024)
K = 10                      # recall@K, the measure
TARGET = 0.98
SAMPLE_EVERY = 8            # every 8th recall that used the index offers its query
MIN_AUDITS = 8              # before the first choice
REMEMBERED = 256            # queries audited lately, by hash: one asked again is not audited again
ALPHA = 0.2                 # moving averages' weight of the newest audit
MIN_GAP_S, COST_RATIO = 0.5, 50.0
MAX_GAP_S = 16.0            # between audits that change nothing
CHEAP = 256                 # the broadest breadth that still searches cheaply (Audit.hard)
EXACT_MAX_MS = 3.0          # a scan this cheap replaces a search that misses the target
SWITCH = 0.8                # between the scan and a breadth that both reach the target, the other
                            # must cost at most this share of the current one (the times are noisy)


class Audit:
    """One space's audit (the owner's): the offered queries, and per breadth the moving
    averages of recall@K and milliseconds; ``exact`` is the exact scan's."""

    def __init__(self):
        self.queue: deque = deque(maxlen=4)      # the newest offered queries: (hash, query)
        self.recent: deque = deque(maxlen=REMEMBERED)     # hashes of the queries audited lately
        self.offered = 0
        self.audits = 0
        self.recall = dict.fromkeys((*LADDER, SKETCH))     # breadth -> recall@K (moving average) or None
        self.ms = dict.fromkeys((*LADDER, SKETCH, EXACT))
        self.next_at = 0.0
        self.gap = MIN_GAP_S                     # to the next audit, at least
        self.chosen = None                       # the last choice
        self.generation = None                   # the index generation audited last
        self.warmed: set = set()                 # choices searched once untimed in that generation
        self.has_sketch = True                   # the last audit's generation had a sketch

    def offer(self, q: np.ndarray) -> None:
        """A recall's query (any thread); every SAMPLE_EVERY-th is kept for an audit, unless
        it is waiting already or was one of the last REMEMBERED audited: a query asked again
        says nothing new about the index, and a few repeated queries the index happens to
        answer well would make a breadth that misses on others look safe."""
        self.offered += 1
        if self.offered % SAMPLE_EVERY == 0:
            q = np.array(q, np.float32)
            key = hash(q.tobytes())
            if key not in self.recent and all(key != waiting for waiting, _ in list(self.queue)):
                self.queue.append((key, q))
            else:          # the next query takes its turn: a workload of few queries still offers each
                self.offered -= 1

    def due(self, now: float) -> bool:
        return bool(self.queue) and now >= self.next_at

    def run(self, similar, now: float, sketch: bool = False, size: int = 0, generation: int = 0) -> int | None:
        """Audit one offered query with ``similar(q, k, breadth=...)`` (SpaceReader.similar),
        the sketch's scan too when the space has one; returns the breadth to publish (None:
        no choice yet). ``size``: the index's vectors, so that rungs below the breadth the
        size already asks for (ann.expansion: 254 at 1M), which search alike, are searched
        once. ``generation``: the index's; a new one is a new index to judge, on any query."""
        try:
            key, q = self.queue.pop()
        except IndexError:
            return None
        new = generation != self.generation
        if new:
            self.generation = generation
            self.recent.clear()
            self.warmed.clear()
        self.has_sketch = sketch
        self.recent.append(key)
        t0 = time.perf_counter()

        # (ids, ms) of one search. A choice's first search in a generation runs once untimed
        # first: it maps and faults in the generation's file (the sketch's first scan at 100K
        # took 6.3 ms, later ones ~1.2), which the moving average would carry for a dozen audits.
        # The time is this thread's CPU time: the keeper runs beside the recalls, and a search
        # that waited for the GIL or was descheduled (tens of ms on a busy host) would carry
        # that wait in the average for several audits, and with SWITCH keep a wrong choice
        def timed(b):
            if b not in self.warmed:
                self.warmed.add(b)
                similar(q, K, breadth=b)
            t = time.thread_time()
            ids = similar(q, K, breadth=b).ids.tolist()
            return ids, (time.thread_time() - t) * 1e3
        truth, ms = timed(EXACT)
        truth = set(truth)
        self._mean(self.ms, EXACT, ms)
        want = min(wanted(K), size)     # as ann.candidates asks the index for a top-K recall
        searched = {}               # the search a rung runs -> (recall, ms), in this audit
        for b in (*LADDER, SKETCH) if sketch else LADDER:
            search = b if b == SKETCH else expansion(size, want, b)
            if search not in searched:
                got, ms = timed(b)
                searched[search] = (len(truth.intersection(got)) / max(len(truth), 1), ms)
            self._mean(self.recall, b, searched[search][0])
            self._mean(self.ms, b, searched[search][1])
        self.audits += 1
        before, self.chosen = self.chosen, self.choice()
        settled = not new and self.chosen is not None and self.chosen == before
        self.gap = min(2 * self.gap, MAX_GAP_S) if settled else MIN_GAP_S
        self.next_at = now + max(self.gap, COST_RATIO * (time.perf_counter() - t0))
        return self.chosen

    def choice(self) -> int | None:
        """The breadth to search at (EXACT, SKETCH: scan instead), by the rules above."""
        if self.audits < MIN_AUDITS:
            return None
        ms = self.ms
        fits = [b for b in LADDER if self.recall[b] >= TARGET][:1]     # the narrowest: broader costs more
        if self.has_sketch and self.recall[SKETCH] is not None and self.recall[SKETCH] >= TARGET:
            fits.append(SKETCH)             # (a generation without one scans exactly instead)
        if not fits and ms[EXACT] > EXACT_MAX_MS:
            return max(LADDER, key=lambda b: (self.recall[b], -b))
        fits.append(EXACT)
        best = min(fits, key=ms.get)
        if self.chosen in fits and ms[best] >= SWITCH * ms[self.chosen]:     # (their measured times are noisy)
            return self.chosen
        return best

    def hard(self) -> bool:
        """Whether the space's data is hard for the index: after MIN_AUDITS, no breadth up
        to CHEAP reaches TARGET. The keeper then writes the index's sketch up to
        sketch.HARD_MAX_BYTES instead of MAX_BYTES (engram/workers/indexer.py)."""
        return self.audits >= MIN_AUDITS and not any(
            self.recall[b] is not None and self.recall[b] >= TARGET for b in LADDER if b <= CHEAP)

    def stats(self) -> dict:
        def name(b) -> str:        # a breadth as text ("64", "sketch", "exact"): JSON as it stands
            return str(BREADTH_NAMES.get(b, b))
        return {"audits": self.audits, "hard": self.hard(), "gap_s": self.gap,
                "chosen": None if self.chosen is None else name(self.chosen),
                "recall_at_10": {name(b): None if r is None else round(r, 4) for b, r in self.recall.items()},
                "ms": {name(b): None if m is None else round(m, 3) for b, m in self.ms.items()}}

    @staticmethod
    def _mean(table: dict, key, value: float) -> None:
        old = table[key]
        table[key] = value if old is None else (1 - ALPHA) * old + ALPHA * value
