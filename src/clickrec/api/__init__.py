"""HTTP API: the FastAPI app factory, routes, the guard; thin, no business logic."""
