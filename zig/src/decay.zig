//! Forgetting curves and CRC32C: the same rules as csrc/kernels/decay_impl.h
//! and crc_impl.h. exp/log are the same Cephes-style polynomials on vectors,
//! so every lane runs without a libm call.
const std = @import("std");
const builtin = @import("builtin");

pub const EINVAL: i64 = -1;
const VW = std.simd.suggestVectorLength(f32) orelse 4;
const Vf = @Vector(VW, f32);
const Vi = @Vector(VW, i32);

inline fn splat(x: f32) Vf {
    return @splat(x);
}

/// 0 below -87 (a result near or below the smallest normal float: subnormal
/// arithmetic costs ~100 cycles per operation), clamped above 88.7.
fn expV(x_in: Vf) Vf {
    const keep = @select(f32, x_in < splat(-87.0), splat(0.0), splat(1.0));
    const x = @min(@max(x_in, splat(-87.0)), splat(88.7));
    const fn_ = (x * splat(1.44269504088896341) + splat(12582912.0)) - splat(12582912.0);
    const r = x - fn_ * splat(0.693359375) + fn_ * splat(2.12194440e-4);
    var p = splat(1.9875691500e-4);
    p = p * r + splat(1.3981999507e-3);
    p = p * r + splat(8.3334519073e-3);
    p = p * r + splat(4.1665795894e-2);
    p = p * r + splat(1.6666665459e-1);
    p = p * r + splat(5.0000001201e-1);
    p = p * r * r + r + splat(1.0);
    const e: Vi = @intFromFloat(fn_);
    const scale: Vf = @bitCast((e + @as(Vi, @splat(127))) << @splat(23));
    return keep * p * scale;
}

fn logV(x: Vf) Vf {
    const bits: Vi = @bitCast(x);
    var e = ((bits >> @splat(23)) & @as(Vi, @splat(0xff))) - @as(Vi, @splat(126));
    var m: Vf = @bitCast((bits & @as(Vi, @splat(@bitCast(@as(u32, 0x807fffff))))) | @as(Vi, @splat(0x3f000000)));
    const small = m < splat(0.70710678118654752);
    e -= @select(i32, small, @as(Vi, @splat(1)), @as(Vi, @splat(0)));
    m = @select(f32, small, m + m - splat(1.0), m - splat(1.0));
    const z = m * m;
    var y = splat(7.0376836292e-2);
    y = y * m - splat(1.1514610310e-1);
    y = y * m + splat(1.1676998740e-1);
    y = y * m - splat(1.2420140846e-1);
    y = y * m + splat(1.4249322787e-1);
    y = y * m - splat(1.6668057665e-1);
    y = y * m + splat(2.0000714765e-1);
    y = y * m - splat(2.4999993993e-1);
    y = y * m + splat(3.3333331174e-1);
    y = y * m * z;
    const fe: Vf = @floatFromInt(e);
    y += fe * splat(-2.12194440e-4);
    y += splat(-0.5) * z;
    return m + y + fe * splat(0.693359375);
}

inline fn curve(comptime kind: u32, s: Vf, a: Vf, c0: f32, c1: f32, w: f32) Vf {
    return switch (kind) {
        0 => s * expV(a * splat(c0)),
        1 => s * expV(splat(c0) * logV(splat(1.0) + a)),
        else => s * (splat(w) * expV(a * splat(c0)) + splat(1.0 - w) * expV(a * splat(c1))),
    };
}

fn run(comptime kind: u32, strength: [*]const f32, age: [*]const f32, n: u64, c0: f32, c1: f32, w: f32, out: [*]f32) void {
    var i: u64 = 0;
    while (i + VW <= n) : (i += VW) {
        const s: Vf = strength[i..][0..VW].*;
        const a: Vf = age[i..][0..VW].*;
        out[i..][0..VW].* = curve(kind, s, a, c0, c1, w);
    }
    if (i < n) { // tail through a padded vector
        var sb: [VW]f32 = @splat(0);
        var ab: [VW]f32 = @splat(0);
        const rest = n - i;
        for (0..rest) |j| {
            sb[j] = strength[i + j];
            ab[j] = age[i + j];
        }
        const o: [VW]f32 = curve(kind, sb, ab, c0, c1, w);
        for (0..rest) |j| out[i + j] = o[j];
    }
}

pub fn decay(strength_: ?[*]const f32, age_: ?[*]const f32, n: u64, kind: u32, p0: f32, p1: f32, p2: f32, out_: ?[*]f32) callconv(.c) i64 {
    if (n == 0) return 0;
    const strength = strength_ orelse return EINVAL;
    const age = age_ orelse return EINVAL;
    const out = out_ orelse return EINVAL;
    switch (kind) {
        0 => {
            if (!(p0 > 0)) return EINVAL;
            run(0, strength, age, n, -1.0 / p0, 0, 0, out);
        },
        1 => {
            if (!(p0 >= 0)) return EINVAL;
            run(1, strength, age, n, -p0, 0, 0, out);
        },
        2 => {
            if (!(p0 > 0) or !(p1 > 0) or !(p2 >= 0 and p2 <= 1)) return EINVAL;
            run(2, strength, age, n, -1.0 / p0, -1.0 / p1, p2, out);
        },
        else => return EINVAL,
    }
    return @intCast(n);
}

const has_sse42 = builtin.cpu.arch == .x86_64 and std.Target.x86.featureSetHas(builtin.cpu.features, .sse4_2);

const crc_tables = blk: {
    @setEvalBranchQuota(100000);
    var t: [8][256]u32 = undefined;
    for (0..256) |i| {
        var c: u32 = @intCast(i);
        for (0..8) |_| c = (c >> 1) ^ (0x82F63B78 & (0 -% (c & 1)));
        t[0][i] = c;
    }
    for (0..256) |i| {
        for (1..8) |k| t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
    }
    break :blk t;
};

inline fn hw8(c: u32, b: u8) u32 {
    return asm ("crc32b %[b], %[c]"
        : [ret] "={eax}" (-> u32),
        : [c] "{eax}" (c),
          [b] "r" (b),
    );
}

inline fn hw64(c: u64, v: u64) u64 {
    return asm ("crc32q %[v], %[c]"
        : [ret] "={rax}" (-> u64),
        : [c] "{rax}" (c),
          [v] "r" (v),
    );
}

// Three interleaved crc32 streams joined by "append n zero bytes" tables,
// as in csrc/kernels/crc_impl.h.
const CRC_LONG: u64 = 8192;
const CRC_SHORT: u64 = 256;
var crc_long: [4][256]u32 = undefined;
var crc_short: [4][256]u32 = undefined;
var crc_ready = std.atomic.Value(u32).init(0);

fn shiftTable(t: *[4][256]u32, n: u64) void {
    var basis: [32]u32 = undefined;
    for (0..32) |i| {
        var x: u64 = @as(u64, 1) << @intCast(i);
        var j: u64 = 0;
        while (j < n) : (j += 8) x = hw64(x, 0);
        basis[i] = @truncate(x);
    }
    for (0..4) |k| {
        for (0..256) |b| {
            var v: u32 = 0;
            for (0..8) |bit| {
                if ((b >> @intCast(bit)) & 1 != 0) v ^= basis[8 * k + bit];
            }
            t[k][b] = v;
        }
    }
}

inline fn shift(t: *const [4][256]u32, c: u32) u32 {
    return t[0][c & 0xff] ^ t[1][(c >> 8) & 0xff] ^ t[2][(c >> 16) & 0xff] ^ t[3][c >> 24];
}

inline fn crc3(c_in: u64, p: *[*]const u8, n: *u64, comptime blk: u64, t: *const [4][256]u32) u64 {
    var c = c_in;
    while (n.* >= 3 * blk) {
        var c1: u64 = 0;
        var c2: u64 = 0;
        var i: u64 = 0;
        while (i < blk) : (i += 8) {
            c = hw64(c, std.mem.readInt(u64, p.*[i..][0..8], .little));
            c1 = hw64(c1, std.mem.readInt(u64, p.*[blk + i ..][0..8], .little));
            c2 = hw64(c2, std.mem.readInt(u64, p.*[2 * blk + i ..][0..8], .little));
        }
        c = shift(t, shift(t, @truncate(c)) ^ @as(u32, @truncate(c1))) ^ @as(u32, @truncate(c2));
        p.* += 3 * blk;
        n.* -= 3 * blk;
    }
    return c;
}

pub fn crc32c(crc: u32, data_: ?*const anyopaque, n_in: u64) callconv(.c) u32 {
    var p: [*]const u8 = @ptrCast(data_ orelse return crc);
    var n = n_in;
    if (has_sse42) {
        if (crc_ready.load(.acquire) == 0) { // racing first calls compute the same tables
            shiftTable(&crc_long, CRC_LONG);
            shiftTable(&crc_short, CRC_SHORT);
            crc_ready.store(1, .release);
        }
        var c: u64 = ~crc;
        c = crc3(c, &p, &n, CRC_LONG, &crc_long);
        c = crc3(c, &p, &n, CRC_SHORT, &crc_short);
        while (n >= 8) : (n -= 8) {
            c = hw64(c, std.mem.readInt(u64, p[0..8], .little));
            p += 8;
        }
        var c32: u32 = @truncate(c);
        while (n > 0) : (n -= 1) {
            c32 = hw8(c32, p[0]);
            p += 1;
        }
        return ~c32;
    }
    const T = &crc_tables;
    var c: u32 = ~crc;
    while (n >= 8) : (n -= 8) {
        const lo = std.mem.readInt(u32, p[0..4], .little) ^ c;
        const hi = std.mem.readInt(u32, p[4..8], .little);
        c = T[7][lo & 0xff] ^ T[6][(lo >> 8) & 0xff] ^ T[5][(lo >> 16) & 0xff] ^ T[4][lo >> 24] ^
            T[3][hi & 0xff] ^ T[2][(hi >> 8) & 0xff] ^ T[1][(hi >> 16) & 0xff] ^ T[0][hi >> 24];
        p += 8;
    }
    while (n > 0) : (n -= 1) {
        c = (c >> 8) ^ T[0][(c ^ p[0]) & 0xff];
        p += 1;
    }
    return ~c;
}
