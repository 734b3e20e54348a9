/* Spreading activation over a CSR graph (one ISA: the work is latency-bound,
 * so what pays is prefetching and a compact per-node state, not SIMD).
 *
 * Semantics (the numpy oracle in engram/_kernels/reference.py is the spec):
 * seeds are touched at hop 0 with their activation (clamped to 1). At hop h
 * (1..max_depth) every node touched at hop h-1 fires once with the
 * activation it had when the hop began: each out-edge (u -> v, w) carries
 * c = a_u * w * decay. Contributions below threshold are dropped. A node
 * that has already fired (touched at an earlier hop) never fires again; it
 * gains c * cycle_penalty (the echo), but an echo never lifts it above the
 * hop's ceiling, decay * the largest activation firing in the hop (what one
 * link of weight 1 from the strongest node firing could give), and a node at
 * or above the ceiling gains nothing. So activation that comes back around a
 * cluster cannot raise a member to the level of what fired into it: the echo
 * is bounded whatever the cluster's size (benches/quality/echo.py). The
 * ceiling is fixed for the hop, so the result does not depend on the order
 * contributions arrive in. A new node is touched at hop h. Activation is
 * clamped to 1 (all contributions are positive, so clamping as we go equals
 * clamping at the end).
 *
 * State: one 8-byte record per node, {mark = epoch << 8 | hop, act}; a node
 * belongs to this spread only if its mark's epoch matches, so nothing is
 * cleared between spreads (the caller clears when the 24-bit epoch wraps).
 * Touched nodes are appended to out_nodes in first-touch order, so the
 * frontier of each hop is a contiguous range of it. eg_spread_hop runs one
 * hop over such a range, so a caller can stop between hops (a latency
 * budget); eg_spread is seeding plus its loop. eg_spread_fire is a hop whose
 * fire values were taken already, over part of the frontier, and
 * eg_spread_gather/eg_spread_merge split a part's work between processes
 * (work stealing, engram/stealing.py).
 */
#include "engram.h"

#define EG_HOP_MASK 0xffu

static inline void eg_prefetch(const void *p) {
#if defined(__GNUC__)
    __builtin_prefetch(p, 1, 3);
#endif
}

/* Node v receives contribution c at hop `hop` (tag = epoch << 8): a first touch joins
 * the next frontier, a node that fired already gains c x cycle_penalty up to the hop's
 * echo ceiling, activation clamps at 1. Returns the new count, or -1 when out_nodes is
 * full. */
static inline int64_t eg_apply(eg_spread_state_t *state, uint32_t v, float c, uint32_t tag, uint32_t hop,
                               float cycle_penalty, float ceiling, uint32_t *out_nodes, uint64_t count,
                               uint64_t out_cap) {
    eg_spread_state_t *st = &state[v];
    float top = 1.0f;
    if ((st->mark & ~EG_HOP_MASK) != tag) {               /* first touch: joins the next frontier */
        if (count >= out_cap) return -1;
        st->mark = tag | hop;
        st->act = 0.0f;
        out_nodes[count++] = v;
    } else if ((st->mark & EG_HOP_MASK) < hop) {          /* fired already: an echo, never re-fires */
        if (st->act >= ceiling) return (int64_t)count;
        c *= cycle_penalty;
        top = ceiling < 1.0f ? ceiling : 1.0f;
    }
    float x = st->act + c;
    st->act = x < top ? x : top;
    return (int64_t)count;
}

EG_API int64_t eg_spread_fire(EG_SPREAD_FIRE_ARGS) {
    if (!offsets || !state || !out_nodes || !fire || (n_nodes && (!targets || !weights))) return EG_EINVAL;
    if (hop == 0 || hop > EG_HOP_MASK || epoch == 0 || epoch > 0xffffffu || begin > end || end > count
        || count > out_cap || !(ceiling >= 0.0f))        /* also rejects a NaN ceiling */
        return EG_EINVAL;
    const uint32_t tag = epoch << 8;
    for (uint64_t i = begin; i < end; i++) {
        if (prefetch_distance && i + prefetch_distance < end) {
            uint32_t ahead = out_nodes[i + prefetch_distance];
            if (ahead < n_nodes) {                        /* validated when its turn comes */
                eg_prefetch(&offsets[ahead]);
                eg_prefetch(&targets[offsets[ahead]]);
                eg_prefetch(&weights[offsets[ahead]]);
            }
        }
        const uint32_t u = out_nodes[i];
        if (u >= n_nodes) return EG_EINVAL;
        const float out = fire[i] * decay;
        const uint64_t e0 = offsets[u], e1 = offsets[u + 1];
        for (uint64_t e = e0; e < e1; e++) {
            if (prefetch_distance && e + prefetch_distance < e1)
                eg_prefetch(&state[targets[e + prefetch_distance]]);
            const float c = out * weights[e];
            if (c < threshold) continue;
            const uint32_t v = targets[e];
            if (v >= n_nodes) return EG_EINVAL;
            const int64_t got = eg_apply(state, v, c, tag, hop, cycle_penalty, ceiling, out_nodes, count,
                                         out_cap);
            if (got < 0) return EG_ENOSPACE;
            count = (uint64_t)got;
        }
    }
    return (int64_t)count;
}

EG_API int64_t eg_spread_hop(EG_SPREAD_HOP_ARGS) {
    if (!offsets || !state || !out_nodes || !fire || (n_nodes && (!targets || !weights))) return EG_EINVAL;
    if (hop == 0 || hop > EG_HOP_MASK || epoch == 0 || epoch > 0xffffffu || begin > end || end > count
        || count > out_cap)
        return EG_EINVAL;                                 /* checked before anything is written */
    float top = 0.0f;
    for (uint64_t i = begin; i < end; i++) {              /* what each fires: its act as the hop begins */
        if (out_nodes[i] >= n_nodes) return EG_EINVAL;
        fire[i] = state[out_nodes[i]].act;
        top = fire[i] > top ? fire[i] : top;
    }
    return eg_spread_fire(offsets, targets, weights, n_nodes, hop, decay, threshold, cycle_penalty, top * decay,
                          prefetch_distance, epoch, state, out_nodes, fire, begin, end, count, out_cap);
}

EG_API int64_t eg_spread_gather(EG_SPREAD_GATHER_ARGS) {
    if (!offsets || !acc || !out_v || !out_s || (n && (!nodes || !fire)) || (n_nodes && (!targets || !weights)))
        return EG_EINVAL;
    uint64_t count = 0;
    int64_t rc = 0;
    for (uint64_t i = 0; i < n && rc == 0; i++) {
        if (prefetch_distance && i + prefetch_distance < n) {
            uint32_t ahead = nodes[i + prefetch_distance];
            if (ahead < n_nodes) {
                eg_prefetch(&offsets[ahead]);
                eg_prefetch(&targets[offsets[ahead]]);
                eg_prefetch(&weights[offsets[ahead]]);
            }
        }
        const uint32_t u = nodes[i];
        if (u >= n_nodes) { rc = EG_EINVAL; break; }
        const float out = fire[i] * decay;
        const uint64_t e0 = offsets[u], e1 = offsets[u + 1];
        for (uint64_t e = e0; e < e1; e++) {
            if (prefetch_distance && e + prefetch_distance < e1 && targets[e + prefetch_distance] < n_nodes)
                eg_prefetch(&acc[targets[e + prefetch_distance]]);
            const float c = out * weights[e];
            if (c < threshold) continue;
            const uint32_t v = targets[e];
            if (v >= n_nodes) { rc = EG_EINVAL; break; }
            if (acc[v] < 0.0f) {                          /* first contribution to v in this batch */
                if (count >= out_cap) { rc = EG_ENOSPACE; break; }
                out_v[count++] = v;
                acc[v] = c;
            } else {
                acc[v] += c;
            }
        }
    }
    for (uint64_t j = 0; j < count; j++) {               /* hand out the sums, leave acc untouched again */
        out_s[j] = acc[out_v[j]];
        acc[out_v[j]] = -1.0f;
    }
    return rc ? rc : (int64_t)count;
}

EG_API int64_t eg_spread_merge(EG_SPREAD_MERGE_ARGS) {
    if (!state || !out_nodes || (n && (!v || !s))) return EG_EINVAL;
    if (hop == 0 || hop > EG_HOP_MASK || epoch == 0 || epoch > 0xffffffu || count > out_cap || !(ceiling >= 0.0f))
        return EG_EINVAL;
    const uint32_t tag = epoch << 8;
    for (uint64_t i = 0; i < n; i++) {
        if (v[i] >= n_nodes) return EG_EINVAL;
        const int64_t got = eg_apply(state, v[i], s[i], tag, hop, cycle_penalty, ceiling, out_nodes, count,
                                     out_cap);
        if (got < 0) return EG_ENOSPACE;
        count = (uint64_t)got;
    }
    return (int64_t)count;
}

EG_API int64_t eg_spread(EG_SPREAD_ARGS) {
    if (n_seeds == 0) return 0;
    if (!offsets || !state || !seeds || !seed_act || !out_nodes || !fire || (n_nodes && !targets)
        || (n_nodes && !weights))
        return EG_EINVAL;
    if (max_depth > EG_HOP_MASK || epoch == 0 || epoch > 0xffffffu) return EG_EINVAL;
    const uint32_t tag = epoch << 8;
    uint64_t count = 0;

    for (uint64_t i = 0; i < n_seeds; i++) {             /* hop 0 */
        uint32_t s = seeds[i];
        if (s >= n_nodes) return EG_EINVAL;
        float a = seed_act[i];
        if (!(a >= 0.0f)) return EG_EINVAL;               /* also rejects NaN */
        eg_spread_state_t *st = &state[s];
        if ((st->mark & ~EG_HOP_MASK) != tag) {
            if (count >= out_cap) return EG_ENOSPACE;
            st->mark = tag;
            st->act = 0.0f;
            out_nodes[count++] = s;
        }
        float x = st->act + a;
        st->act = x < 1.0f ? x : 1.0f;
    }

    uint64_t begin = 0, end = count;
    for (uint32_t hop = 1; hop <= max_depth && begin < end; hop++) {
        int64_t next = eg_spread_hop(offsets, targets, weights, n_nodes, hop, decay, threshold, cycle_penalty,
                                     prefetch_distance, epoch, state, out_nodes, fire, begin, end, count, out_cap);
        if (next < 0) return next;
        begin = end;
        end = count = (uint64_t)next;
    }
    for (uint64_t i = 0; i < count; i++)                  /* final activations, in touch order */
        fire[i] = state[out_nodes[i]].act;
    return (int64_t)count;
}
