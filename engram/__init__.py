"""engram: a cognitive memory engine in shared memory."""
__version__ = "0.1.0"
