# Checks the Cython drivers make of the arrays they are handed (cimported, inlined).
cimport numpy as cnp


cdef inline bint vec(cnp.ndarray a, int typenum, bint writable):
    """A 1-D C-contiguous array of that element type (writable when asked)."""
    return (cnp.PyArray_NDIM(a) == 1 and cnp.PyArray_TYPE(a) == typenum
            and (cnp.PyArray_ISCARRAY(a) if writable else cnp.PyArray_ISCARRAY_RO(a)))
