"""Settings of recall, interference and reconsolidation: their defaults, known names and checks.

Each is a frozen dataclass; ``Space.configure_*(**changes)`` replaces a space's
settings with ``with_changes(**changes)``, which refuses names it does not know
and values out of range before anything changes. Snapshots keep them by name.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from engram import validate
from engram.errors import InvalidInputError, shown
from engram.kernels.spreadrun import SpreadParams

DEFAULT_DIM = 384                          # an embedding dimension when none is given (MiniLM-sized)
MAX_DIM = 65536
#: from this many rows a space gets an index: where the index's recall overtakes the exact
#: scan's (docs/scale.md, "When the index pays": 10K x 768 warm, P50 0.47 against 1.08 ms;
#: 10K x 384, 0.47 against 0.54; at 5K about even), and its seeds' recall@10 is 0.99
INDEX_MIN_ROWS = 10_000
FAN_MODES = ("none", "source", "target", "both")    # engram/cognition/fan.py
RECALL_MODES = ("spread", "ppr")                      # activation hop by hop | personalized PageRank
SPREAD_SETTINGS = tuple(f.name for f in fields(SpreadParams))   # max_depth, decay, threshold, ...


def _number(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _in(obj, name: str, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> None:
    """Refuse obj.name unless it is a finite number in the interval (open ends as marked)."""
    v = getattr(obj, name)
    if not (_number(v) and (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)):
        raise InvalidInputError(f"{name} must be a number in {'(' if lo_open else '['}{lo:g}, {hi:g}"
                                f"{')' if hi_open else ']'}, got {shown(v)}")


def _integer(obj, name: str, lo: int, hi: int) -> None:
    v = getattr(obj, name)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise InvalidInputError(f"{name} must be an integer in [{lo}, {hi}], got {shown(v)}")


def _switch(obj, name: str) -> None:
    if not isinstance(getattr(obj, name), bool):
        raise InvalidInputError(f"{name} must be True or False, got {shown(getattr(obj, name))}")


def _choice(obj, name: str, choices: tuple) -> None:
    if getattr(obj, name) not in choices:
        raise InvalidInputError(f"{name} must be one of {', '.join(choices)}, got {shown(getattr(obj, name))}")


@dataclass(frozen=True)
class RecallConfig:
    """Recall's tunables (docs/recall.md). The spreading rules (max_depth, decay, threshold,
    cycle_penalty, prefetch_distance) are a SpreadParams, with its defaults but for decay, and
    are changed by name like the rest: ``configure_recall(decay=0.6)``."""
    # decay 0.9 (0.7 before), with spread_weight 0.9 below, was chosen by leaving one graph out of
    # four (docs/recall-quality.md, issue 18): one hop then carries to a seed's neighbours about
    # what PPR's walk gives them. Kept below 1, because the echo ceiling of csrc/kernels/spread.c
    # (decay x the largest activation fired in a hop) keeps a cluster's members strictly below
    # what fired into them only while decay < 1
    spread: SpreadParams = SpreadParams(decay=0.9)
    sigmoid_midpoint: float = 0.5       # cosine that maps to activation 0.5
    sigmoid_steepness: float = 10.0
    forget_tau_s: float = 30 * 86400.0  # retention e-folds after 30 days without access
    seed_factor: int = 2                # seeds = seed_factor x k (at least k)
    hot_budget_share: float = 0.5       # of the scan budget, what the hot (f32) tier may use
    # the two below were chosen by docs/recall-quality.md: the source fan keeps hubs from
    # echoing activation back to themselves, and lambda 0.9 lets what spreading finds rank
    # while a direct match with activation over 0.9 (cosine over ~0.72) keeps its place; 0.9 is
    # the largest lambda the leave-one-out search was offered, to keep that guarantee useful
    fan: str = "source"                 # fan effect: "none" | "source" | "target" | "both"
    spread_weight: float = 0.9          # lambda: how much of what spreading adds counts
    mode: str = "spread"                # "spread" | "ppr" (engram/recall/ppr.py)
    ppr_restart: float = 0.5            # restart probability of the walk (HippoRAG's damping 0.5)
    ppr_iterations: int = 20            # at most this many steps of the series
    ppr_tolerance: float = 1e-3         # stop when the mass still walking is below this
    ppr_epsilon: float = 1e-4           # drop contributions below this (keeps the walk local)
    priming: bool = False               # repetition, semantic and associative priming
    priming_weight: float = 0.2         # a primed memory's score grows by at most this share
    repetition_tau_s: float = 600.0     # repetition priming e-folds 10 minutes after a recall
    semantic_tau_s: float = 120.0       # residual activation e-folds in 2 minutes
    semantic_share: float = 0.5         # of a reached memory's activation, what stays as residual
    semantic_keep: int = 32             # memories per recall that keep a residual
    associative_rate: float = 0.05      # Hebbian step for links among what is recalled together
    associative_top: int = 3            # ... among the top this many results

    def with_changes(self, **changes) -> "RecallConfig":
        """A checked copy with changes, spreading settings included by name."""
        changes = validate.known_settings(changes, RECALL_SETTINGS, "recall")
        sp = {k: changes.pop(k) for k in list(changes) if k in SPREAD_SETTINGS}
        # check() of the rules may normalise them (a threshold below float32's tiniest)
        return replace(self, spread=replace(self.spread, **sp).check(), **changes).check()

    def check(self) -> "RecallConfig":
        self.spread.check()
        for name in ("sigmoid_steepness", "forget_tau_s", "repetition_tau_s", "semantic_tau_s"):
            _in(self, name, 0.0, math.inf, lo_open=True, hi_open=True)
        _in(self, "sigmoid_midpoint", -1.0, 1.0)
        _integer(self, "seed_factor", 1, 64)
        _in(self, "spread_weight", 0.0, 1.0)
        _choice(self, "fan", FAN_MODES)
        _in(self, "hot_budget_share", 0.0, 1.0, lo_open=True, hi_open=True)
        _choice(self, "mode", RECALL_MODES)
        for name in ("ppr_restart", "ppr_tolerance", "ppr_epsilon"):
            _in(self, name, 0.0, 1.0, lo_open=True, hi_open=True)
        _integer(self, "ppr_iterations", 1, 255)
        _switch(self, "priming")
        for name in ("priming_weight", "semantic_share", "associative_rate"):
            _in(self, name, 0.0, 1.0)
        _integer(self, "semantic_keep", 0, 256)
        _integer(self, "associative_top", 0, 16)
        return self

    def settings(self) -> dict:
        """Every setting by name (the spreading rules flattened in), as snapshots keep them."""
        return {**{f: getattr(self.spread, f) for f in SPREAD_SETTINGS},
                **{f: getattr(self, f) for f in OWN_SETTINGS}}

    # settings travel to worker processes as float64s beside the query (engram/workers)
    def to_vector(self) -> list:
        return [float(CHOICES[f].index(v)) if f in CHOICES else float(v) for f, v in self.settings().items()]

    @classmethod
    def from_vector(cls, v) -> "RecallConfig":
        names = SPREAD_SETTINGS + OWN_SETTINGS
        base = {**{f: getattr(SpreadParams(), f) for f in SPREAD_SETTINGS},
                **{f: getattr(cls, f) for f in OWN_SETTINGS}}
        got = {f: CHOICES[f][int(x)] if f in CHOICES else type(base[f])(x) for f, x in zip(names, v)}
        sp = SpreadParams(**{f: got.pop(f) for f in SPREAD_SETTINGS})
        return cls(spread=sp, **got)


CHOICES = {"fan": FAN_MODES, "mode": RECALL_MODES}
OWN_SETTINGS = tuple(f.name for f in fields(RecallConfig) if f.name != "spread")
RECALL_SETTINGS = frozenset(SPREAD_SETTINGS + OWN_SETTINGS)


@dataclass(frozen=True)
class InterferenceConfig:
    """Interference at remember time (engram/cognition/interference.py)."""
    proactive: bool = False        # old memories weaken a similar new one
    retroactive: bool = False      # a new memory weakens similar old ones
    threshold: float = 0.9         # cosine at which two memories interfere
    proactive_rate: float = 0.2    # confidence lost by a new memory under full load
    retroactive_rate: float = 0.1  # confidence lost by an old memory under full load
    floor: float = 0.05            # interference never pushes confidence below this
    competitors: int = 8           # most similar memories considered per new memory

    @property
    def enabled(self) -> bool:
        return self.proactive or self.retroactive

    def with_changes(self, **changes) -> "InterferenceConfig":
        changes = validate.known_settings(changes, {f.name for f in fields(self)}, "interference")
        return replace(self, **changes).check()

    def check(self) -> "InterferenceConfig":
        _switch(self, "proactive")
        _switch(self, "retroactive")
        _in(self, "threshold", 0.0, 1.0, hi_open=True)
        for name in ("proactive_rate", "retroactive_rate", "floor"):
            _in(self, name, 0.0, 1.0)
        _integer(self, "competitors", 1, 1024)
        return self

    def settings(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class ReconsolidationConfig:
    """The reconsolidation window and plasticity (engram/cognition/reconsolidation.py)."""
    opens_after_s: float = 3600.0        # the window opens 1 h after a recall...
    closes_after_s: float = 6 * 3600.0   # ...and closes 6 h after it
    min_age_s: float = 86400.0           # only memories older than 24 h at recall are labile
    peak_plasticity: float = 0.5         # weight of an update made mid-window
    history: int = 8                     # previous versions kept per memory

    def with_changes(self, **changes) -> "ReconsolidationConfig":
        changes = validate.known_settings(changes, {f.name for f in fields(self)}, "reconsolidation")
        return replace(self, **changes).check()

    def check(self) -> "ReconsolidationConfig":
        for name in ("opens_after_s", "closes_after_s", "min_age_s"):
            _in(self, name, 0.0, math.inf, hi_open=True)
        if self.closes_after_s <= self.opens_after_s:
            raise InvalidInputError(f"closes_after_s ({self.closes_after_s}) must be later than "
                                    f"opens_after_s ({self.opens_after_s})")
        _in(self, "peak_plasticity", 0.0, 1.0, lo_open=True)
        _integer(self, "history", 1, 1024)
        return self

    def settings(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class TieringConfig:
    """Background migration between tiers by access recency and strength
    (engram/cognition/tiering.py; docs/scale.md, Tiers)."""
    cold_after_s: float = 86400.0        # a memory not recalled for a day moves to the cold tier (int8)...
    keep_strength: float = 2.0           # ...unless strength x confidence is at least this (above 1: none kept)
    warm_after_access_s: float = 300.0   # a cold memory recalled in the last 5 minutes moves back to warm
    interval_s: float = 10.0             # each space is looked at this often
    batch: int = 8192                    # memories moved per step (the space's writers wait for one step)

    def check(self) -> "TieringConfig":
        for name in ("cold_after_s", "warm_after_access_s", "interval_s"):
            _in(self, name, 0.0, math.inf, lo_open=True, hi_open=True)
        _in(self, "keep_strength", 0.0, math.inf, hi_open=True)
        if self.warm_after_access_s >= self.cold_after_s:
            raise InvalidInputError(f"warm_after_access_s ({self.warm_after_access_s}) must be shorter than "
                                    f"cold_after_s ({self.cold_after_s}), or memories would move back and forth")
        _integer(self, "batch", 1, 1 << 20)
        return self

