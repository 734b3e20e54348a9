"""Worker processes: the shared task board and record pool, the worker loop, work stealing, supervision."""
