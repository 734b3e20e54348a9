"""Spreading seed and hop steps in plain Python on the split (mark, act) state.

The same rules as csrc/kernels/spread.c, in float32. numba compiles these
functions for the numba backend; the numpy backend runs them as they are
for step-wise spreads (its whole spreads use the float64 oracle).
"""
import numpy as np

try:                      # the numba backend inlines apply(); without numba it stays plain Python
    from numba import njit as _njit
except ImportError:       # pragma: no cover - numba is a dependency, but the numpy backend must not need it
    def _njit(**_):
        return lambda f: f

HOP_MASK = np.uint32(0xFF)
ONE = np.float32(1.0)


def seed(seeds, seed_act, epoch, mark, act, out_nodes):
    """Hop 0: touch the seeds; returns the count of touched nodes."""
    tag = np.uint32(epoch) << np.uint32(8)
    count = 0
    for i in range(seeds.shape[0]):
        s = seeds[i]
        if (mark[s] & ~HOP_MASK) != tag:
            mark[s] = tag
            act[s] = np.float32(0.0)
            out_nodes[count] = s
            count += 1
        act[s] = min(act[s] + seed_act[i], ONE)
    return count


@_njit(cache=True, inline="always")
def apply(v, c, hop_no, tag, cycle_penalty, ceiling, mark, act, out_nodes, count):
    """Node v receives contribution c at hop hop_no (the rule of a hop and of a merge):
    a first touch joins the next frontier, a node that fired already gains c x
    cycle_penalty up to the hop's echo ceiling (nothing at or above it), activation
    clamps at 1. Returns the new count. Compiled, so the numba backend's steps inline
    it and the numpy backend calls it as a function."""
    top = ONE
    if (mark[v] & ~HOP_MASK) != tag:
        mark[v] = tag | np.uint32(hop_no)
        act[v] = np.float32(0.0)
        out_nodes[count] = v
        count += 1
    elif (mark[v] & HOP_MASK) < hop_no:
        if act[v] >= ceiling:
            return count
        c = np.float32(c * cycle_penalty)
        top = min(ceiling, ONE)
    act[v] = min(np.float32(act[v] + c), top)
    return count



def fire_range(offsets, targets, weights, hop_no, decay, threshold, cycle_penalty, ceiling, epoch, mark, act,
               out_nodes, fire, begin, end, count):
    """One hop over part [begin, end) of a frontier, firing fire[begin:end] (taken when the
    hop began) with the whole frontier's echo ceiling (eg_spread_fire); returns the new
    count (a whole hop: next frontier [end, count))."""
    tag = np.uint32(epoch) << np.uint32(8)
    for i in range(begin, end):
        u = out_nodes[i]
        out = np.float32(fire[i] * decay)
        for e in range(offsets[u], offsets[u + 1]):
            c = np.float32(out * weights[e])
            if c >= threshold:
                count = apply(targets[e], c, hop_no, tag, cycle_penalty, ceiling, mark, act, out_nodes, count)
    return count


def gather(offsets, targets, weights, decay, threshold, nodes, fire, acc, out_v, out_s):
    """The gathering half of a split hop (eg_spread_gather): contributions of
    nodes[i] firing fire[i], summed per target; acc is < 0 where untouched, and so
    again on return. Returns the number of distinct targets, or -2 (no space)."""
    count = 0
    rc = 0
    n = offsets.shape[0] - 1
    for i in range(nodes.shape[0]):
        u = nodes[i]
        if u >= n:
            rc = -1
            break
        out = np.float32(fire[i] * decay)
        for e in range(offsets[u], offsets[u + 1]):
            c = np.float32(out * weights[e])
            if c < threshold:
                continue
            v = targets[e]
            if v >= n:
                rc = -1
                break
            if acc[v] < 0:
                if count >= out_v.shape[0]:
                    rc = -2
                    break
                out_v[count] = v
                count += 1
                acc[v] = c
            else:
                acc[v] = np.float32(acc[v] + c)
        if rc:
            break
    for j in range(count):
        out_s[j] = acc[out_v[j]]
        acc[out_v[j]] = np.float32(-1.0)
    return rc if rc else count


def merge(hop_no, cycle_penalty, ceiling, epoch, mark, act, v, s, out_nodes, count, n_nodes):
    """The applying half of a split hop (eg_spread_merge); returns the new count, or -1
    for a target outside the graph, -2 when out_nodes is full."""
    tag = np.uint32(epoch) << np.uint32(8)
    for i in range(v.shape[0]):
        if v[i] >= n_nodes:
            return -1
        if count >= out_nodes.shape[0] and (mark[v[i]] & ~HOP_MASK) != tag:
            return -2
        count = apply(v[i], s[i], hop_no, tag, cycle_penalty, ceiling, mark, act, out_nodes, count)
    return count
