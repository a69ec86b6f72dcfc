"""HTTP API: the FastAPI app factory, routes, the middlewares; thin, no business logic."""
