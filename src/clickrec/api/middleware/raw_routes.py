"""The raw routes (``api/raw.py``) served below the framework, from the ASGI scope."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from clickrec.api.raw import RawRoutes


class RawRoutesMiddleware:
    """Answers a request for one of ``routes`` itself (the body read whole first, in one
    message when BodyLimitMiddleware is outside); hands any other on to the app."""

    def __init__(self, app: ASGIApp, routes: RawRoutes) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.match(scope) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left: nobody to answer
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        response = await self.routes.serve(route, scope, body)
        await response(scope, receive, send)
