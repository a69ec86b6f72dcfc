"""The middlewares every HTTP request passes through, one job each (pure ASGI).

``api/app.py`` stacks them in this order, outermost first:

1. ``context.ContextMiddleware``: the request id (``x-request-id``), start time and status.
2. ``observability.ObservabilityMiddleware``: the request span, one access log line, the
   latency metric, the audit of admin changes; outside every layer that can answer, so a
   refusal is logged, traced and timed like any answer.
3. ``headers.SecurityHeadersMiddleware``: security headers and CORS on every answer, and
   CORS preflights answered (before any limit, as browsers send no key with them).
4. ``limits.HeaderLimitMiddleware``: 431 before a key in an oversized header is looked at.
5. ``auth.AuthenticationMiddleware``: the bearer key verified once; the outcome, a
   ``Caller``, handed on in the scope to the rate limit, the route dependencies
   (``api/deps.py``) and the raw routes.
6. ``limits.RateLimitMiddleware``: 429 per address and per verified key, before the body
   is read, so a flood costs no body reads.
7. ``limits.BodyLimitMiddleware``: 413, 400 and 408 while the body arrives; the layers
   inside get it whole, in one message.
8. ``raw_routes.RawRoutesMiddleware``: ``POST /v1/events`` served below the framework.
"""
