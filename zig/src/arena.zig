//! Per-thread bump arena for kernel scratch (the M:N top-k heaps, and any
//! kernel that needs temporary memory): one region per thread, 1 MiB by
//! default, configurable from 1 to 100 MiB, reset at the start of each
//! kernel call so allocation is a pointer bump and freeing is free.
//!
//! When a request does not fit, the configured overflow strategy decides:
//! panic (abort: for tests that must prove no overflow happens), error (the
//! kernel returns EG_ENOMEM) or fallback (take the memory from the page
//! allocator for this call, counted). Counters are process-wide atomics.
const std = @import("std");

pub const Overflow = enum(u32) { panic = 0, err = 1, fallback = 2 };
pub const MIN_BYTES: u64 = 1 << 20;
pub const MAX_BYTES: u64 = 100 << 20;

var config_bytes = std.atomic.Value(u64).init(MIN_BYTES);
var config_overflow = std.atomic.Value(u32).init(@intFromEnum(Overflow.fallback));

const Counters = struct {
    high_water: std.atomic.Value(u64) = .init(0),
    overflows: std.atomic.Value(u64) = .init(0),
    fallbacks: std.atomic.Value(u64) = .init(0),
    allocations: std.atomic.Value(u64) = .init(0),
    threads: std.atomic.Value(u64) = .init(0),
};
var counters: Counters = .{};

const Region = struct {
    buf: []u8 = &.{},
    used: usize = 0,
    /// memory taken from the page allocator by the fallback strategy this call
    spill: [8][]u8 = undefined,
    n_spill: usize = 0,
};
threadlocal var region: Region = .{};

/// Start of a kernel call: forget the previous call's scratch.
pub fn reset() void {
    const r = &region;
    for (r.spill[0..r.n_spill]) |s| std.heap.page_allocator.free(s);
    r.n_spill = 0;
    r.used = 0;
    const want = config_bytes.load(.monotonic);
    if (r.buf.len != want) {
        if (r.buf.len == 0) _ = counters.threads.fetchAdd(1, .monotonic);
        if (r.buf.len != 0) std.heap.page_allocator.free(r.buf);
        r.buf = std.heap.page_allocator.alloc(u8, want) catch &.{};
    }
}

pub const Error = error{OutOfArena};

/// Scratch for n items of T, valid until the next reset() on this thread.
pub fn alloc(comptime T: type, n: usize) Error![]T {
    const r = &region;
    const bytes = n * @sizeOf(T);
    const start = std.mem.alignForward(usize, r.used, @alignOf(T));
    _ = counters.allocations.fetchAdd(1, .monotonic);
    if (start + bytes <= r.buf.len) {
        r.used = start + bytes;
        _ = counters.high_water.fetchMax(r.used, .monotonic);
        const p: [*]T = @ptrCast(@alignCast(r.buf.ptr + start));
        return p[0..n];
    }
    _ = counters.overflows.fetchAdd(1, .monotonic);
    switch (@as(Overflow, @enumFromInt(config_overflow.load(.monotonic)))) {
        .panic => @panic("engram arena overflow (strategy: panic)"),
        .err => return Error.OutOfArena,
        .fallback => {
            if (r.n_spill == r.spill.len) return Error.OutOfArena;
            const mem = std.heap.page_allocator.alignedAlloc(u8, .fromByteUnits(@alignOf(T)), bytes) catch return Error.OutOfArena;
            r.spill[r.n_spill] = mem;
            r.n_spill += 1;
            _ = counters.fallbacks.fetchAdd(1, .monotonic);
            const p: [*]T = @ptrCast(@alignCast(mem.ptr));
            return p[0..n];
        },
    }
}

pub fn configure(bytes: u64, overflow: u32) callconv(.c) i32 {
    if (bytes < MIN_BYTES or bytes > MAX_BYTES or overflow > 2) return -1;
    config_bytes.store(bytes, .monotonic);
    config_overflow.store(overflow, .monotonic);
    return 0;
}

/// out: [bytes, overflow strategy, high water, overflows, fallbacks, allocations, threads]
pub fn stats(out: ?[*]u64) callconv(.c) i32 {
    const o = out orelse return -1;
    o[0] = config_bytes.load(.monotonic);
    o[1] = config_overflow.load(.monotonic);
    o[2] = counters.high_water.load(.monotonic);
    o[3] = counters.overflows.load(.monotonic);
    o[4] = counters.fallbacks.load(.monotonic);
    o[5] = counters.allocations.load(.monotonic);
    o[6] = counters.threads.load(.monotonic);
    return 0;
}

pub fn resetStats() callconv(.c) void {
    counters.high_water.store(0, .monotonic);
    counters.overflows.store(0, .monotonic);
    counters.fallbacks.store(0, .monotonic);
    counters.allocations.store(0, .monotonic);
}

/// Test hook: reset this thread's arena and take `bytes` of scratch, writing
/// a pattern through it and reading it back. 0 = ok, -3 = did not fit.
pub fn probe(bytes: u64) callconv(.c) i64 {
    reset();
    const mem = alloc(u8, @intCast(bytes)) catch return -3;
    for (mem, 0..) |*b, i| b.* = @truncate(i *% 31);
    for (mem, 0..) |b, i| if (b != @as(u8, @truncate(i *% 31))) return -1;
    return 0;
}
