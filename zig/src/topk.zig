//! Top-k scan kernels: dot or cosine of one query against n rows of f32 or f16.
//! Semantics match csrc/kernels/topk_impl.h exactly (see engram.h).
const std = @import("std");
const arena = @import("arena.zig");

pub const EINVAL: i32 = -1;
const VW = std.simd.suggestVectorLength(f32) orelse 4;
const Vf = @Vector(VW, f32);

/// Bounded min-heap in the caller's arrays; root = worst kept result.
const Heap = struct {
    idx: [*]i64,
    score: [*]f32,
    k: u64,
    size: u64 = 0,

    inline fn worse(sa: f32, ia: i64, sb: f32, ib: i64) bool {
        return sa < sb or (sa == sb and ia > ib);
    }

    fn siftDown(h: *Heap, start: u64, size: u64) void {
        var i = start;
        const s = h.score[i];
        const x = h.idx[i];
        while (true) {
            var c = 2 * i + 1;
            if (c >= size) break;
            if (c + 1 < size and worse(h.score[c + 1], h.idx[c + 1], h.score[c], h.idx[c])) c += 1;
            if (!worse(h.score[c], h.idx[c], s, x)) break;
            h.score[i] = h.score[c];
            h.idx[i] = h.idx[c];
            i = c;
        }
        h.score[i] = s;
        h.idx[i] = x;
    }

    inline fn push(h: *Heap, s: f32, x: i64) void {
        if (h.size < h.k) {
            var i = h.size;
            h.size += 1;
            while (i > 0) {
                const p = (i - 1) / 2;
                if (!worse(s, x, h.score[p], h.idx[p])) break;
                h.score[i] = h.score[p];
                h.idx[i] = h.idx[p];
                i = p;
            }
            h.score[i] = s;
            h.idx[i] = x;
        } else if (worse(h.score[0], h.idx[0], s, x)) {
            h.score[0] = s;
            h.idx[0] = x;
            h.siftDown(0, h.size);
        }
    }

    fn finish(h: *Heap) i64 {
        var end = h.size;
        while (end > 1) : (end -= 1) {
            std.mem.swap(f32, &h.score[0], &h.score[end - 1]);
            std.mem.swap(i64, &h.idx[0], &h.idx[end - 1]);
            h.siftDown(0, end - 1);
        }
        return @intCast(h.size);
    }
};

const builtin = @import("builtin");
/// Fused multiply-add only where the CPU has it: without FMA, @mulAdd
/// lowers to a libm-style software fmaf call per vector (7x slower).
const has_fma = builtin.cpu.arch == .x86_64 and std.Target.x86.featureSetHas(builtin.cpu.features, .fma);

inline fn madd(a: Vf, b: Vf, c: Vf) Vf {
    return if (has_fma) @mulAdd(Vf, a, b, c) else a * b + c;
}

const has_f16c = builtin.cpu.arch == .x86_64 and std.Target.x86.featureSetHas(builtin.cpu.features, .f16c);

/// Exact f16 -> f32 with integer vector ops, for CPUs without F16C (where
/// @floatCast would call a compiler-rt routine per element). Normals and
/// subnormals: shift the bits into place and rescale by 2^112; inf/NaN:
/// force the exponent to all ones.
inline fn widenHalf(raw: @Vector(VW, u16)) Vf {
    const h: @Vector(VW, u32) = raw;
    const sign = (h & @as(@Vector(VW, u32), @splat(0x8000))) << @splat(16);
    const mag = (h & @as(@Vector(VW, u32), @splat(0x7fff))) << @splat(13);
    const scaled: Vf = @as(Vf, @bitCast(mag)) * @as(Vf, @splat(0x1.0p112));
    var bits: @Vector(VW, u32) = @bitCast(scaled);
    const infnan = (h & @as(@Vector(VW, u32), @splat(0x7c00))) == @as(@Vector(VW, u32), @splat(0x7c00));
    bits = @select(u32, infnan, bits | @as(@Vector(VW, u32), @splat(0x7f800000)), bits);
    return @bitCast(bits | sign);
}

inline fn load(comptime T: type, p: [*]const T) Vf {
    if (T == f32) return p[0..VW].*;
    if (T == i8) {
        const v: @Vector(VW, i8) = p[0..VW].*;
        return @floatFromInt(v);
    }
    if (has_f16c) {
        const v: @Vector(VW, f16) = p[0..VW].*;
        return @floatCast(v);
    }
    const raw: @Vector(VW, u16) = @bitCast(@as(@Vector(VW, f16), p[0..VW].*));
    return widenHalf(raw);
}

/// Dot product of q with one row, and the row's squared norm when wanted.
inline fn row(comptime T: type, comptime want_rr: bool, q: [*]const f32, r: [*]const T, dim: u64, rr_out: *f32) f32 {
    var d = [4]Vf{ @splat(0), @splat(0), @splat(0), @splat(0) };
    var nn = [4]Vf{ @splat(0), @splat(0), @splat(0), @splat(0) };
    var i: u64 = 0;
    while (i + 4 * VW <= dim) : (i += 4 * VW) {
        inline for (0..4) |u| {
            const x = load(T, r + i + u * VW);
            d[u] = madd(load(f32, q + i + u * VW), x, d[u]);
            if (want_rr) nn[u] = madd(x, x, nn[u]);
        }
    }
    while (i + VW <= dim) : (i += VW) {
        const x = load(T, r + i);
        d[0] = madd(load(f32, q + i), x, d[0]);
        if (want_rr) nn[0] = madd(x, x, nn[0]);
    }
    var dot: f32 = @reduce(.Add, (d[0] + d[1]) + (d[2] + d[3]));
    var rr: f32 = if (want_rr) @reduce(.Add, (nn[0] + nn[1]) + (nn[2] + nn[3])) else 0;
    while (i < dim) : (i += 1) {
        const x = toF32(T, r[i]);
        dot += q[i] * x;
        rr += x * x;
    }
    rr_out.* = rr;
    return dot;
}

inline fn toF32(comptime T: type, x: T) f32 {
    return if (T == i8) @floatFromInt(x) else @floatCast(x);
}

/// Outside these bounds float sums of squares lose precision or overflow.
const safe_lo: f32 = 1e-28;
const safe_hi: f32 = 1e28;

/// Cosine in f64: the slow path for rows (or queries) whose squares overflow
/// or underflow f32, where the fast path would return 0 or NaN.
fn cosineExact(comptime T: type, q: [*]const f32, qn: f64, r: [*]const T, dim: u64) f32 {
    var dot: f64 = 0;
    var rr: f64 = 0;
    for (0..dim) |i| {
        const x: f64 = toF32(T, r[i]);
        dot += @as(f64, q[i]) * x;
        rr += x * x;
    }
    const den = qn * @sqrt(rr);
    return if (den > 0) @floatCast(dot / den) else 0;
}

/// The query's norm in f64 with eight sums, in the order csrc/kernels/topk_impl.h's
/// eg_qnorm uses (one dependent chain cost ~0.5 us at 384-d, paid per row by a caller
/// scoring single rows).
fn queryNorm(q: [*]const f32, dim: u64) f64 {
    var s: [8]f64 = .{ 0, 0, 0, 0, 0, 0, 0, 0 };
    var i: u64 = 0;
    while (i + 8 <= dim) : (i += 8) {
        inline for (0..8) |j| s[j] += @as(f64, q[i + j]) * q[i + j];
    }
    var t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    while (i < dim) : (i += 1) t += @as(f64, q[i]) * q[i];
    return @sqrt(t);
}

pub const ENOMEM: i64 = -3;
const MN_BLOCK = 128;
const MN_STACK = 8;

/// M:N top-k, the one implementation (1:N is m = 1); the same blocking as
/// csrc/kernels/topk_impl.h: every query scans an L2-sized block of rows
/// before the next block is read, and the first query computes its norms.
pub fn TopK(comptime T: type, comptime cosine: bool) type {
    return struct {
        pub fn many(qs_: ?[*]const f32, m: u64, q_stride: u64, rows: ?*const anyopaque, n: u64, dim: u64, row_stride: u64, mask: ?[*]const u8, row_norms: ?[*]const f32, k: u64, out_idx_: ?[*]i64, out_score_: ?[*]f32, out_count_: ?[*]i64) callconv(.c) i64 {
            if (m == 0) return 0;
            const qs = qs_ orelse return EINVAL;
            const out_idx = out_idx_ orelse return EINVAL;
            const out_score = out_score_ orelse return EINVAL;
            const out_count = out_count_ orelse return EINVAL;
            if ((n != 0 and rows == null) or dim == 0 or q_stride < dim) return EINVAL;
            if (k == 0 or n == 0) {
                for (0..m) |j| out_count[j] = 0;
                return 0;
            }
            const base: [*]const u8 = @ptrCast(rows.?);
            var stack_h: [MN_STACK]Heap = undefined;
            var stack_qn: [MN_STACK]f64 = undefined;
            var h: []Heap = stack_h[0..];
            var qn: []f64 = stack_qn[0..];
            if (m > MN_STACK) { // per-query heaps from this thread's arena
                arena.reset();
                h = arena.alloc(Heap, m) catch return ENOMEM;
                qn = arena.alloc(f64, m) catch return ENOMEM;
            }
            for (0..m) |j| {
                h[j] = Heap{ .idx = out_idx + j * k, .score = out_score + j * k, .k = k };
                qn[j] = 1;
                if (cosine) qn[j] = queryNorm(qs + j * q_stride, dim);
            }
            var rrs: [MN_BLOCK]f32 = undefined;
            var b: u64 = 0;
            while (b < n) : (b += MN_BLOCK) {
                const e = @min(n, b + MN_BLOCK);
                for (0..m) |j| {
                    const q = qs + j * q_stride;
                    // an extreme query takes the exact path for every row
                    const q_extreme = cosine and qn[j] > 0 and (qn[j] < 1e-14 or qn[j] > 1e14);
                    var i = b;
                    while (i < e) : (i += 1) {
                        if (mask) |mk| if (mk[i] == 0) continue;
                        const r: [*]const T = @ptrCast(@alignCast(base + i * row_stride));
                        var s: f32 = undefined;
                        if (cosine and j == 0 and row_norms == null) {
                            s = row(T, true, q, r, dim, &rrs[i - b]);
                        } else {
                            var unused: f32 = 0;
                            s = row(T, false, q, r, dim, &unused);
                        }
                        if (cosine) {
                            const rr = if (row_norms) |nr| nr[i] * nr[i] else rrs[i - b];
                            if (q_extreme or !(rr > safe_lo and rr < safe_hi) or !(@abs(s) < safe_hi)) {
                                s = cosineExact(T, q, qn[j], r, dim);
                            } else {
                                const den = @as(f32, @floatCast(qn[j])) * @sqrt(rr);
                                s = if (den > 0) s / den else 0;
                            }
                        }
                        h[j].push(s, @intCast(i));
                    }
                }
            }
            for (0..m) |j| out_count[j] = h[j].finish();
            return out_count[0];
        }

        pub fn run(q: ?[*]const f32, rows: ?*const anyopaque, n: u64, dim: u64, row_stride: u64, mask: ?[*]const u8, row_norms: ?[*]const f32, k: u64, out_idx: ?[*]i64, out_score: ?[*]f32) callconv(.c) i64 {
            var count = [1]i64{0};
            const rc = many(q, 1, dim, rows, n, dim, row_stride, mask, row_norms, k, out_idx, out_score, &count);
            return if (rc < 0) rc else count[0];
        }
    };
}

/// The sketch's scan (engram.h's EG_SKETCH_ARGS): each row byte holds two 4-bit codes
/// (low nibble: element b, high nibble: element dim + b; value = code - 8); a row's score
/// is the exact integer dot product of the int8 query with the values, times the row's
/// scale; best first, equal scores by lower index, as csrc/kernels/topk_impl.h's
/// eg_sketch_topk.
pub fn sketchTopk(q_: ?[*]const i8, rows_: ?[*]const u8, n: u64, dim: u64, row_stride: u64, row_scale_: ?[*]const f32, k: u64, out_idx_: ?[*]i64, out_score_: ?[*]f32) callconv(.c) i64 {
    const q = q_ orelse return EINVAL;
    const out_idx = out_idx_ orelse return EINVAL;
    const out_score = out_score_ orelse return EINVAL;
    if ((n != 0 and (rows_ == null or row_scale_ == null)) or dim == 0 or row_stride < dim) return EINVAL;
    if (k == 0 or n == 0) return 0;
    const rows = rows_.?;
    const row_scale = row_scale_.?;
    const q_hi = q + dim;
    var bias: i32 = 0;             // the codes' offset: 8 x sum(q)
    for (0..2 * dim) |j| bias += 8 * @as(i32, q[j]);
    var h = Heap{ .idx = out_idx, .score = out_score, .k = k };
    const L = 32;
    const low: @Vector(L, u8) = @splat(15);
    const four: @Vector(L, u3) = @splat(4);
    for (0..n) |i| {
        const r = rows + i * row_stride;
        var acc: @Vector(L, i32) = @splat(0);
        var j: u64 = 0;
        while (j + L <= dim) : (j += L) {
            const v: @Vector(L, u8) = r[j..][0..L].*;
            const lo: @Vector(L, i32) = v & low;
            const hi: @Vector(L, i32) = v >> four;
            const a: @Vector(L, i32) = @as(@Vector(L, i8), q[j..][0..L].*);
            const b: @Vector(L, i32) = @as(@Vector(L, i8), q_hi[j..][0..L].*);
            acc += a * lo + b * hi;
        }
        var dot: i32 = @reduce(.Add, acc);
        while (j < dim) : (j += 1) dot += @as(i32, q[j]) * @as(i32, r[j] & 15) + @as(i32, q_hi[j]) * @as(i32, r[j] >> 4);
        h.push(@as(f32, @floatFromInt(dot - bias)) * row_scale[i], @intCast(i));
    }
    return h.finish();
}
