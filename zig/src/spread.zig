//! Spreading activation over CSR: the same rules as csrc/kernels/spread.c.
const std = @import("std");
const layout = @import("layout.zig");

pub const EINVAL: i64 = -1;
pub const ENOSPACE: i64 = -2;
const HOP_MASK: u32 = 0xff;

inline fn prefetch(p: anytype) void {
    @prefetch(p, .{ .rw = .write, .locality = 3, .cache = .data });
}

pub fn spread(
    offsets_: ?[*]const u64, targets_: ?[*]const u32, weights_: ?[*]const f32, n_nodes: u64,
    seeds_: ?[*]const u32, seed_act_: ?[*]const f32, n_seeds: u64,
    max_depth: u32, decay: f32, threshold: f32, cycle_penalty: f32, prefetch_distance: u32,
    epoch: u32, state_: ?[*]layout.SpreadState, out_nodes_: ?[*]u32, fire_: ?[*]f32, out_cap: u64,
) callconv(.c) i64 {
    if (n_seeds == 0) return 0;
    const offsets = offsets_ orelse return EINVAL;
    const state = state_ orelse return EINVAL;
    const seeds = seeds_ orelse return EINVAL;
    const seed_act = seed_act_ orelse return EINVAL;
    const out_nodes = out_nodes_ orelse return EINVAL;
    const fire = fire_ orelse return EINVAL;
    if (n_nodes > 0 and (targets_ == null or weights_ == null)) return EINVAL;
    if (max_depth > HOP_MASK or epoch == 0 or epoch > 0xffffff) return EINVAL;
    const targets = targets_ orelse offsetsAsEmpty(u32);
    const weights = weights_ orelse offsetsAsEmpty(f32);
    const tag: u32 = epoch << 8;
    var count: u64 = 0;

    for (0..n_seeds) |i| {
        const s = seeds[i];
        if (s >= n_nodes) return EINVAL;
        const a = seed_act[i];
        if (!(a >= 0)) return EINVAL;
        const st = &state[s];
        if ((st.mark & ~HOP_MASK) != tag) {
            if (count >= out_cap) return ENOSPACE;
            st.mark = tag;
            st.act = 0;
            out_nodes[count] = s;
            count += 1;
        }
        st.act = @min(st.act + a, 1.0);
    }

    var begin: u64 = 0;
    var end: u64 = count;
    var hop: u32 = 1;
    while (hop <= max_depth and begin < end) : (hop += 1) {
        const next = spreadHop(offsets, targets, weights, n_nodes, hop, decay, threshold, cycle_penalty, prefetch_distance, epoch, state, out_nodes, fire, begin, end, count, out_cap);
        if (next < 0) return next;
        begin = end;
        count = @intCast(next);
        end = count;
    }
    for (0..count) |i| fire[i] = state[out_nodes[i]].act;
    return @intCast(count);
}

fn offsetsAsEmpty(comptime T: type) [*]const T {
    const empty = [_]T{};
    return &empty;
}

/// One hop over the frontier out_nodes[begin..end): see eg_spread_hop in engram.h.
pub fn spreadHop(
    offsets_: ?[*]const u64, targets_: ?[*]const u32, weights_: ?[*]const f32, n_nodes: u64,
    hop: u32, decay: f32, threshold: f32, cycle_penalty: f32, prefetch_distance: u32,
    epoch: u32, state_: ?[*]layout.SpreadState, out_nodes_: ?[*]u32, fire_: ?[*]f32,
    begin: u64, end: u64, count_in: u64, out_cap: u64,
) callconv(.c) i64 {
    const state = state_ orelse return EINVAL;
    const out_nodes = out_nodes_ orelse return EINVAL;
    const fire = fire_ orelse return EINVAL;
    if (offsets_ == null or (n_nodes > 0 and (targets_ == null or weights_ == null))) return EINVAL;
    // checked before anything is written
    if (hop == 0 or hop > HOP_MASK or epoch == 0 or epoch > 0xffffff or begin > end or end > count_in or count_in > out_cap) return EINVAL;
    var top: f32 = 0;
    for (begin..end) |i| { // what each fires: its act as the hop begins
        if (out_nodes[i] >= n_nodes) return EINVAL;
        fire[i] = state[out_nodes[i]].act;
        top = @max(top, fire[i]);
    }
    return spreadFire(offsets_, targets_, weights_, n_nodes, hop, decay, threshold, cycle_penalty, top * decay, prefetch_distance, epoch, state, out_nodes, fire, begin, end, count_in, out_cap);
}

/// A hop over out_nodes[begin..end) firing the given fire[begin..end), with the frontier's
/// echo ceiling: see eg_spread_fire in engram.h.
pub fn spreadFire(
    offsets_: ?[*]const u64, targets_: ?[*]const u32, weights_: ?[*]const f32, n_nodes: u64,
    hop: u32, decay: f32, threshold: f32, cycle_penalty: f32, ceiling: f32, prefetch_distance: u32,
    epoch: u32, state_: ?[*]layout.SpreadState, out_nodes_: ?[*]u32, fire_: ?[*]f32,
    begin: u64, end: u64, count_in: u64, out_cap: u64,
) callconv(.c) i64 {
    const offsets = offsets_ orelse return EINVAL;
    const state = state_ orelse return EINVAL;
    const out_nodes = out_nodes_ orelse return EINVAL;
    const fire = fire_ orelse return EINVAL;
    if (n_nodes > 0 and (targets_ == null or weights_ == null)) return EINVAL;
    if (hop == 0 or hop > HOP_MASK or epoch == 0 or epoch > 0xffffff or begin > end or end > count_in or count_in > out_cap) return EINVAL;
    if (!(ceiling >= 0)) return EINVAL; // also rejects a NaN ceiling
    const targets = targets_ orelse offsetsAsEmpty(u32);
    const weights = weights_ orelse offsetsAsEmpty(f32);
    const tag: u32 = epoch << 8;
    var count = count_in;
    for (begin..end) |i| {
        if (prefetch_distance != 0 and i + prefetch_distance < end) {
            const ahead = out_nodes[i + prefetch_distance];
            if (ahead < n_nodes) { // validated when its turn comes
                prefetch(&offsets[ahead]);
                prefetch(&targets[offsets[ahead]]);
                prefetch(&weights[offsets[ahead]]);
            }
        }
        const u = out_nodes[i];
        if (u >= n_nodes) return EINVAL;
        const out = fire[i] * decay;
        const e1 = offsets[u + 1];
        var e = offsets[u];
        while (e < e1) : (e += 1) {
            if (prefetch_distance != 0 and e + prefetch_distance < e1) prefetch(&state[targets[e + prefetch_distance]]);
            const c = out * weights[e];
            if (c < threshold) continue;
            const v = targets[e];
            if (v >= n_nodes) return EINVAL;
            count = apply(state, v, c, tag, hop, cycle_penalty, ceiling, out_nodes, count, out_cap) orelse return ENOSPACE;
        }
    }
    return @intCast(count);
}

/// Node v receives contribution c at hop `hop` (tag = epoch << 8): a first touch joins
/// the next frontier, a node that fired already gains c * cycle_penalty up to the hop's
/// echo ceiling (and nothing at or above it), activation clamps at 1. Returns the new
/// count, or null when out_nodes is full.
inline fn apply(state: [*]layout.SpreadState, v: u32, c_in: f32, tag: u32, hop: u32, cycle_penalty: f32, ceiling: f32, out_nodes: [*]u32, count_in: u64, out_cap: u64) ?u64 {
    var c = c_in;
    var count = count_in;
    var top: f32 = 1.0;
    const st = &state[v];
    if ((st.mark & ~HOP_MASK) != tag) {
        if (count >= out_cap) return null;
        st.mark = tag | hop;
        st.act = 0;
        out_nodes[count] = v;
        count += 1;
    } else if ((st.mark & HOP_MASK) < hop) { // fired already: an echo, never re-fires
        if (st.act >= ceiling) return count;
        c *= cycle_penalty;
        top = @min(ceiling, 1.0);
    }
    st.act = @min(st.act + c, top);
    return count;
}

/// The gathering half of a split hop: see eg_spread_gather in engram.h.
pub fn spreadGather(
    offsets_: ?[*]const u64, targets_: ?[*]const u32, weights_: ?[*]const f32, n_nodes: u64,
    decay: f32, threshold: f32, prefetch_distance: u32, nodes_: ?[*]const u32, fire_: ?[*]const f32, n: u64,
    acc_: ?[*]f32, out_v_: ?[*]u32, out_s_: ?[*]f32, out_cap: u64,
) callconv(.c) i64 {
    const offsets = offsets_ orelse return EINVAL;
    const acc = acc_ orelse return EINVAL;
    const out_v = out_v_ orelse return EINVAL;
    const out_s = out_s_ orelse return EINVAL;
    if (n > 0 and (nodes_ == null or fire_ == null)) return EINVAL;
    if (n_nodes > 0 and (targets_ == null or weights_ == null)) return EINVAL;
    const nodes = nodes_ orelse offsetsAsEmpty(u32);
    const fire = fire_ orelse offsetsAsEmpty(f32);
    const targets = targets_ orelse offsetsAsEmpty(u32);
    const weights = weights_ orelse offsetsAsEmpty(f32);
    var count: u64 = 0;
    var rc: i64 = 0;
    outer: for (0..n) |i| {
        if (prefetch_distance != 0 and i + prefetch_distance < n) {
            const ahead = nodes[i + prefetch_distance];
            if (ahead < n_nodes) {
                prefetch(&offsets[ahead]);
                prefetch(&targets[offsets[ahead]]);
                prefetch(&weights[offsets[ahead]]);
            }
        }
        const u = nodes[i];
        if (u >= n_nodes) {
            rc = EINVAL;
            break;
        }
        const out = fire[i] * decay;
        const e1 = offsets[u + 1];
        var e = offsets[u];
        while (e < e1) : (e += 1) {
            if (prefetch_distance != 0 and e + prefetch_distance < e1 and targets[e + prefetch_distance] < n_nodes)
                prefetch(&acc[targets[e + prefetch_distance]]);
            const c = out * weights[e];
            if (c < threshold) continue;
            const v = targets[e];
            if (v >= n_nodes) {
                rc = EINVAL;
                break :outer;
            }
            if (acc[v] < 0) { // first contribution to v in this batch
                if (count >= out_cap) {
                    rc = ENOSPACE;
                    break :outer;
                }
                out_v[count] = v;
                count += 1;
                acc[v] = c;
            } else {
                acc[v] += c;
            }
        }
    }
    for (0..count) |j| { // hand out the sums, leave acc untouched again
        out_s[j] = acc[out_v[j]];
        acc[out_v[j]] = -1.0;
    }
    return if (rc != 0) rc else @intCast(count);
}

/// The applying half of a split hop: see eg_spread_merge in engram.h.
pub fn spreadMerge(
    n_nodes: u64, hop: u32, cycle_penalty: f32, ceiling: f32, epoch: u32, state_: ?[*]layout.SpreadState,
    v_: ?[*]const u32, s_: ?[*]const f32, n: u64, out_nodes_: ?[*]u32, count_in: u64, out_cap: u64,
) callconv(.c) i64 {
    const state = state_ orelse return EINVAL;
    const out_nodes = out_nodes_ orelse return EINVAL;
    if (n > 0 and (v_ == null or s_ == null)) return EINVAL;
    if (hop == 0 or hop > HOP_MASK or epoch == 0 or epoch > 0xffffff or count_in > out_cap) return EINVAL;
    if (!(ceiling >= 0)) return EINVAL;
    const v = v_ orelse offsetsAsEmpty(u32);
    const s = s_ orelse offsetsAsEmpty(f32);
    const tag: u32 = epoch << 8;
    var count = count_in;
    for (0..n) |i| {
        if (v[i] >= n_nodes) return EINVAL;
        count = apply(state, v[i], s[i], tag, hop, cycle_penalty, ceiling, out_nodes, count, out_cap) orelse return ENOSPACE;
    }
    return @intCast(count);
}
