/* Portable variant: plain C, any x86-64 (and any other CPU). */
#define EG_SUFFIX _scalar
typedef float vf;
#define VW 1
#define VZERO() 0.0f
#define VLOAD32(p) (*(p))
#define VLOAD16(p) eg_half_to_float(*(p))
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VADD(a, b) ((a) + (b))
#define VSUM(a) (a)
#include "topk_impl.h"
