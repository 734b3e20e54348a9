/* CRC32C (Castagnoli, reflected 0x82F63B78), the write-ahead log's checksum.
 * Variants with EG_HW_CRC use the SSE4.2 crc32 instruction 8 bytes at a
 * time; the others use slice-by-8 tables built once at library load. */
#include <stdint.h>
#include <string.h>

#if defined(EG_HW_CRC)
#include <nmmintrin.h>
EG_API uint32_t EG_FN(eg_crc32c)(EG_CRC_ARGS) {
    const uint8_t *p = (const uint8_t *)data;
    uint64_t c = ~crc & 0xffffffffu;
    if (!p) return crc;
    for (; n && ((uintptr_t)p & 7); n--) c = _mm_crc32_u8((uint32_t)c, *p++);
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
