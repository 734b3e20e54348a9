/* Hardware event counters through perf_event_open(2), for the cache miss
 * rates of spreading. Counting covers the calling thread, user space only.
 * Many VMs and containers refuse these (EOPNOTSUPP, ENOENT, EACCES): the
 * callers report that as "not supported" with the reason, never a number. */
#include "engram.h"

#if defined(__linux__)
#include <errno.h>
#include <linux/perf_event.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

EG_API int64_t eg_perf_open(uint32_t type, uint64_t config) {
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.type = type;
    a.config = config;
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    long fd = syscall(__NR_perf_event_open, &a, 0, -1, -1, 0);
    return fd < 0 ? -(int64_t)errno : (int64_t)fd;
}

EG_API int64_t eg_perf_read(int32_t fd) {
    uint64_t v;
    if (read(fd, &v, sizeof v) != (ssize_t)sizeof v) return -(int64_t)errno;
    return (int64_t)v;
}

EG_API int32_t eg_perf_close(int32_t fd) { return close(fd) == 0 ? 0 : -errno; }
#else
EG_API int64_t eg_perf_open(uint32_t type, uint64_t config) { (void)type; (void)config; return -95; }
EG_API int64_t eg_perf_read(int32_t fd) { (void)fd; return -95; }
EG_API int32_t eg_perf_close(int32_t fd) { (void)fd; return -95; }
#endif
