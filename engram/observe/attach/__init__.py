"""Tools that read a live engine from outside, read-only: list, inspect, top, trace tail, Prometheus."""
