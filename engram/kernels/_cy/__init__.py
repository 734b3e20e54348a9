"""Cython drivers: call kernel function pointers directly, without ctypes per call."""
