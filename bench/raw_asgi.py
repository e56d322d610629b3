"""The ceiling: a raw ASGI callable that answers every request with the reference article's
bytes, with no framework at all. What uvicorn itself can do on this machine.

    .venv/bin/python -m uvicorn bench.raw_asgi:app --workers 2 --no-access-log
"""

from __future__ import annotations

from typing import Any

from bench.reference_app import ARTICLE_JSON

BODY = ARTICLE_JSON
HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BODY)).encode()),
]
START = {"type": "http.response.start", "status": 200, "headers": HEADERS}
RESPONSE = {"type": "http.response.body", "body": BODY}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    await send(START)
    await send(RESPONSE)
