"""The engine as a service. api (the FastAPI app from its route modules: memories, recall,
system), common (the Service and error mapping), models (the one schema), guard (API keys,
body limit), idempotency, and service (``engram serve``, ``engram daemon start | stop |
status``)."""
