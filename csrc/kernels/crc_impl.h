/* CRC32C (Castagnoli, reflected 0x82F63B78), the write-ahead log's checksum.
 * Variants with EG_HW_CRC use the SSE4.2 crc32 instruction 8 bytes at a
 * time; the others use slice-by-8 tables built once at library load. */
#include <stdint.h>
#include <string.h>

#if defined(EG_HW_CRC)
#include <nmmintrin.h>
/* One crc32 instruction stream runs at one 8-byte step per 3 cycles (its
 * latency); three independent streams over three blocks fill the pipeline.
 * The blocks' states are then joined with the linear "append n zero bytes"
 * operator, applied by 4 x 256 lookup tables per block size. */
#define EG_CRC_LONG 8192
#define EG_CRC_SHORT 256
static uint32_t EG_FN(eg_crc_long)[4][256], EG_FN(eg_crc_short)[4][256];
static int EG_FN(eg_crc_ready);

static void EG_FN(eg_crc_shift_table)(uint32_t T[4][256], uint64_t n) {
    uint32_t basis[32];
    for (int i = 0; i < 32; i++) {               /* where each state bit goes after n zero bytes */
        uint64_t x = 1u << i;
        for (uint64_t j = 0; j < n; j += 8) x = _mm_crc32_u64(x, 0);
        basis[i] = (uint32_t)x;
    }
    for (int k = 0; k < 4; k++)
        for (int b = 0; b < 256; b++) {
            uint32_t v = 0;
            for (int bit = 0; bit < 8; bit++)
                if (b >> bit & 1) v ^= basis[8 * k + bit];
            T[k][b] = v;
        }
}

static inline uint32_t EG_FN(eg_crc_shift)(uint32_t T[4][256], uint32_t c) {
    return T[0][c & 0xff] ^ T[1][(c >> 8) & 0xff] ^ T[2][(c >> 16) & 0xff] ^ T[3][c >> 24];
}

/* Three interleaved streams over 3 x blk bytes, joined into c. */
#define EG_CRC3(c, p, n, blk, T)                                                  \
    for (; n >= 3 * (blk); n -= 3 * (blk), p += 3 * (blk)) {                     \
        uint64_t c1 = 0, c2 = 0, v0, v1, v2;                                     \
        for (uint64_t i = 0; i < (blk); i += 8) {                                \
            memcpy(&v0, p + i, 8);                                               \
            memcpy(&v1, p + (blk) + i, 8);                                       \
            memcpy(&v2, p + 2 * (blk) + i, 8);                                   \
            c = _mm_crc32_u64(c, v0);                                            \
            c1 = _mm_crc32_u64(c1, v1);                                          \
            c2 = _mm_crc32_u64(c2, v2);                                          \
        }                                                                        \
        c = EG_FN(eg_crc_shift)(T, EG_FN(eg_crc_shift)(T, (uint32_t)c) ^ (uint32_t)c1) ^ (uint32_t)c2; \
    }

EG_API uint32_t EG_FN(eg_crc32c)(EG_CRC_ARGS) {
    const uint8_t *p = (const uint8_t *)data;
    uint64_t c = ~crc & 0xffffffffu;
    if (!p) return crc;
    if (!__atomic_load_n(&EG_FN(eg_crc_ready), __ATOMIC_ACQUIRE)) {
        /* racing first calls compute the same tables; the flag publishes them */
        EG_FN(eg_crc_shift_table)(EG_FN(eg_crc_long), EG_CRC_LONG);
        EG_FN(eg_crc_shift_table)(EG_FN(eg_crc_short), EG_CRC_SHORT);
        __atomic_store_n(&EG_FN(eg_crc_ready), 1, __ATOMIC_RELEASE);
    }
    for (; n && ((uintptr_t)p & 7); n--) c = _mm_crc32_u8((uint32_t)c, *p++);
    EG_CRC3(c, p, n, EG_CRC_LONG, EG_FN(eg_crc_long))
    EG_CRC3(c, p, n, EG_CRC_SHORT, EG_FN(eg_crc_short))
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
    }
    for (; n; n--) c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
#else
static uint32_t EG_FN(eg_crc_table)[8][256];

__attribute__((constructor)) static void EG_FN(eg_crc_init)(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        EG_FN(eg_crc_table)[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++) {
            uint32_t prev = EG_FN(eg_crc_table)[t - 1][i];
            EG_FN(eg_crc_table)[t][i] = (prev >> 8) ^ EG_FN(eg_crc_table)[0][prev & 0xff];
        }
}

EG_API uint32_t EG_FN(eg_crc32c)(EG_CRC_ARGS) {
    const uint8_t *p = (const uint8_t *)data;
    uint32_t (*T)[256] = EG_FN(eg_crc_table);
    uint32_t c = ~crc;
    if (!p) return crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
        lo ^= c;
        c = T[7][lo & 0xff] ^ T[6][(lo >> 8) & 0xff] ^ T[5][(lo >> 16) & 0xff] ^ T[4][lo >> 24]
          ^ T[3][hi & 0xff] ^ T[2][(hi >> 8) & 0xff] ^ T[1][(hi >> 16) & 0xff] ^ T[0][hi >> 24];
    }
    for (; n; n--) c = (c >> 8) ^ T[0][(c ^ *p++) & 0xff];
    return ~c;
}
#endif
