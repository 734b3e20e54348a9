//! engram kernel library in Zig: the same C ABI as csrc/ (see csrc/include/engram.h).
//!
//! One build per ISA level (setup.py passes -mcpu x86_64, x86_64_v3 or
//! x86_64_v4); each exports eg_<op>_<dtype>_<isa> for the level it was built
//! for, and Python loads the best library the CPU runs. Vector width comes
//! from the target at compile time, so one source serves every level.
const std = @import("std");
const builtin = @import("builtin");
const layout = @import("layout.zig");
const topk = @import("topk.zig");
const spread_mod = @import("spread.zig");
const decay_mod = @import("decay.zig");
const arena = @import("arena.zig");

const has = std.Target.x86.featureSetHas;
const features = builtin.cpu.features;
/// The ISA level this library was compiled for.
pub const isa: []const u8 = if (builtin.cpu.arch != .x86_64)
    "scalar"
else if (has(features, .avx512f) and has(features, .avx512bw))
    "avx512"
else if (has(features, .avx2) and has(features, .fma) and has(features, .f16c))
    "avx2"
else
    "scalar";

export fn eg_abi_version() callconv(.c) u32 {
    return layout.ABI_VERSION;
}

export fn eg_layout_hash() callconv(.c) u64 {
    return layout.layout_hash;
}

export fn eg_isa() callconv(.c) [*:0]const u8 {
    return @ptrCast(isa.ptr);
}

export fn eg_layout_lookup(record: ?[*:0]const u8, field: ?[*:0]const u8, offset: ?*i64, size: ?*i64) callconv(.c) i32 {
    const r = std.mem.span(record orelse return topk.EINVAL);
    const f = std.mem.span(field orelse return topk.EINVAL);
    for (layout.entries) |e| {
        if (std.mem.eql(u8, e.record, r) and std.mem.eql(u8, e.field, f)) {
            if (offset) |o| o.* = e.offset;
            if (size) |s| s.* = e.size;
            return 0;
        }
    }
    return topk.EINVAL;
}

comptime {
    @export(&spread_mod.spread, .{ .name = "eg_spread", .linkage = .strong });
    @export(&spread_mod.spreadHop, .{ .name = "eg_spread_hop", .linkage = .strong });
    @export(&spread_mod.spreadFire, .{ .name = "eg_spread_fire", .linkage = .strong });
    @export(&spread_mod.spreadGather, .{ .name = "eg_spread_gather", .linkage = .strong });
    @export(&spread_mod.spreadMerge, .{ .name = "eg_spread_merge", .linkage = .strong });
    @export(&arena.configure, .{ .name = "eg_arena_configure", .linkage = .strong });
    @export(&arena.stats, .{ .name = "eg_arena_stats", .linkage = .strong });
    @export(&arena.resetStats, .{ .name = "eg_arena_reset_stats", .linkage = .strong });
    @export(&arena.probe, .{ .name = "eg_arena_probe", .linkage = .strong });
    @export(&decay_mod.decay, .{ .name = "eg_decay_f32_" ++ isa, .linkage = .strong });
    @export(&decay_mod.crc32c, .{ .name = "eg_crc32c_" ++ isa, .linkage = .strong });
    for (.{ .{ "dot", f32, false }, .{ "dot", f16, false }, .{ "cosine", f32, true }, .{ "cosine", f16, true }, .{ "dot", i8, false }, .{ "cosine", i8, true } }) |v| {
        const name = "eg_" ++ v[0] ++ "_topk_" ++ @typeName(v[1]) ++ "_" ++ isa;
        @export(&topk.TopK(v[1], v[2]).run, .{ .name = name, .linkage = .strong });
        const name_mn = "eg_" ++ v[0] ++ "_topk_mn_" ++ @typeName(v[1]) ++ "_" ++ isa;
        @export(&topk.TopK(v[1], v[2]).many, .{ .name = name_mn, .linkage = .strong });
    }
}

test "layout hash is exported" {
    try std.testing.expect(eg_layout_hash() == layout.layout_hash);
}
