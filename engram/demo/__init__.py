"""`engram demo`: a memory of the Python standard library, embedded offline, queried."""
