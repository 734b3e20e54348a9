//! engram kernel library in Zig: the same C ABI as csrc/ (see csrc/include/engram.h).
//! Every export is checked at compile time against the header's prototype
//! (zig/src/abi.zig, generated from it by tools/gen_abi.py).
//!
//! One build per ISA level (setup.py passes -mcpu x86_64, x86_64_v3 or
//! x86_64_v4); each exports eg_<op>_<dtype>_<isa> for the level it was built
//! for, and Python loads the best library the CPU runs. Vector width comes
//! from the target at compile time, so one source serves every level.
const std = @import("std");
const builtin = @import("builtin");
const layout = @import("layout.zig");
const abi = @import("abi.zig");
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

fn abiHash() callconv(.c) u64 {
    return abi.abi_hash;
}

fn layoutHash() callconv(.c) u64 {
    return layout.layout_hash;
}

fn isaName() callconv(.c) [*:0]const u8 {
    return @ptrCast(isa.ptr);
}

fn layoutLookup(record: ?[*:0]const u8, field: ?[*:0]const u8, offset: ?*i64, size: ?*i64) callconv(.c) i32 {
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

/// What implements each symbol engram.h declares for the Zig libraries (abi.symbols).
const symbols = .{
    .eg_abi_hash = &abiHash,
    .eg_layout_hash = &layoutHash,
    .eg_isa = &isaName,
    .eg_layout_lookup = &layoutLookup,
    .eg_spread = &spread_mod.spread,
    .eg_spread_hop = &spread_mod.spreadHop,
    .eg_spread_fire = &spread_mod.spreadFire,
    .eg_spread_gather = &spread_mod.spreadGather,
    .eg_spread_merge = &spread_mod.spreadMerge,
    .eg_arena_configure = &arena.configure,
    .eg_arena_stats = &arena.stats,
    .eg_arena_reset_stats = &arena.resetStats,
    .eg_arena_probe = &arena.probe,
};

/// What implements each per-ISA kernel (abi.variants), exported as eg_<op>_<isa>.
const variants = .{
    .dot_topk_f32 = &topk.TopK(f32, false).run,
    .dot_topk_f16 = &topk.TopK(f16, false).run,
    .cosine_topk_f32 = &topk.TopK(f32, true).run,
    .cosine_topk_f16 = &topk.TopK(f16, true).run,
    .dot_topk_i8 = &topk.TopK(i8, false).run,
    .cosine_topk_i8 = &topk.TopK(i8, true).run,
    .dot_topk_mn_f32 = &topk.TopK(f32, false).many,
    .dot_topk_mn_f16 = &topk.TopK(f16, false).many,
    .dot_topk_mn_i8 = &topk.TopK(i8, false).many,
    .cosine_topk_mn_f32 = &topk.TopK(f32, true).many,
    .cosine_topk_mn_f16 = &topk.TopK(f16, true).many,
    .cosine_topk_mn_i8 = &topk.TopK(i8, true).many,
    .decay_f32 = &decay_mod.decay,
    .crc32c = &decay_mod.crc32c,
    .sketch_topk = &topk.sketchTopk,
};

comptime {
    @setEvalBranchQuota(20_000); // the signature checks loop over every parameter of every export
    exportChecked(abi.symbols, symbols, "", "");
    exportChecked(abi.variants, variants, "eg_", "_" ++ isa);
    // the constants the Zig code spells itself
    if (topk.EINVAL != abi.EG_EINVAL or spread_mod.EINVAL != abi.EG_EINVAL or decay_mod.EINVAL != abi.EG_EINVAL or
        spread_mod.ENOSPACE != abi.EG_ENOSPACE or topk.ENOMEM != abi.EG_ENOMEM)
        @compileError("an error code in zig/src differs from engram.h's EG_E*");
    if (@backingInt(arena.Overflow.panic) != abi.EG_ARENA_PANIC or @backingInt(arena.Overflow.err) != abi.EG_ARENA_ERROR or
        @backingInt(arena.Overflow.fallback) != abi.EG_ARENA_FALLBACK)
        @compileError("arena.Overflow differs from engram.h's EG_ARENA_*");
}

/// Export each function `Declared` lists (abi.zig, generated from engram.h) from `impls`
/// as prefix ++ name ++ suffix. A signature that differs from the header, a declared
/// function with no implementation, or an export the header lacks is a compile error.
fn exportChecked(comptime Declared: type, comptime impls: anytype, comptime prefix: []const u8, comptime suffix: []const u8) void {
    for (@typeInfo(Declared).@"struct".decl_names) |name| {
        const symbol = prefix ++ name ++ suffix;
        if (!@hasField(@TypeOf(impls), name)) @compileError("engram.h declares " ++ symbol ++ " for the Zig libraries but engram.zig does not export it");
        const f = @field(impls, name);
        checkSignature(symbol, @field(Declared, name), @typeInfo(@TypeOf(f)).pointer.child);
        @export(f, .{ .name = symbol, .linkage = .strong });
    }
    for (@typeInfo(@TypeOf(impls)).@"struct".field_names) |name| {
        if (!@hasDecl(Declared, name)) @compileError(prefix ++ name ++ suffix ++ " is exported by engram.zig but engram.h does not declare it for Zig");
    }
}

fn checkSignature(comptime symbol: []const u8, comptime Want: type, comptime Got: type) void {
    const w = @typeInfo(Want).@"fn";
    const g = @typeInfo(Got).@"fn";
    var same = g.param_types.len == w.param_types.len and sameAbiType(g.return_type.?, w.return_type.?) and
        !g.attrs.varargs and g.attrs.@"callconv".eql(w.attrs.@"callconv");
    if (same) for (g.param_types, w.param_types) |gp, wp| {
        same = same and sameAbiType(gp.?, wp.?);
    };
    if (!same) @compileError(symbol ++ " is " ++ @typeName(Got) ++ " but engram.h declares " ++ @typeName(Want) ++ " (zig/src/abi.zig: regenerate it with python tools/gen_abi.py after a header change)");
}

/// Pointers match by pointee and constness (one C address, whatever Zig's pointer kind); other types exactly.
fn sameAbiType(comptime Got: type, comptime Want: type) bool {
    const w = pointee(Want) orelse return Got == Want;
    const g = pointee(Got) orelse return false;
    return g.child == w.child and g.attrs.@"const" == w.attrs.@"const";
}

fn pointee(comptime T: type) ?std.builtin.Type.Pointer {
    const info = switch (@typeInfo(T)) {
        .optional => |o| @typeInfo(o.child),
        else => |i| i,
    };
    return if (info == .pointer and info.pointer.size != .slice) info.pointer else null;
}

test "layout hash is exported" {
    try std.testing.expect(layoutHash() == layout.layout_hash);
}
