"""The web page of `cnnapp serve`: `/` and its files, and `/cnnapp/models`, the list it draws.

The page (cnnapp/serving/static/) is plain HTML, CSS and JavaScript shipped in the package: no
CDN, no build step, so it works offline. It reads `/cnnapp/models` (each served model's kind,
classes, layer table from the export's metadata) and calls `:explain` and `:predict` like any
client. Every string a model provides is put in the page as text, never as HTML, and the
Content-Security-Policy below allows no inline script, so a class named `<img onerror=...>`
stays text.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cnnapp.serving.codec import NotFound

STATIC = Path(__file__).resolve().parent / "static"
# Only these files are served: a fixed table, so no request path ever reaches the file system.
FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
         "style.css": "text/css; charset=utf-8"}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                               "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _file(name: str) -> Response:
    return Response((STATIC / name).read_bytes(), media_type=FILES[name], headers=HEADERS)


def model_list(serving_app) -> dict:
    """Each served model's latest version as the page needs it (metadata only: no Keras here)."""
    manager = serving_app.manager
    models = []
    for name in manager.model_names():
        try:
            servable = manager.resolve(name, None, None)
        except NotFound:
            status = manager.status(name)["model_version_status"]
            models.append({"name": name, "available": False,
                           "status": [{"version": s["version"], "state": s["state"],
                                       "error": s["status"]["error_message"]} for s in status]})
            continue
        meta = servable.cnnapp
        models.append({
            "name": name, "available": True, "version": servable.version, "kind": meta.get("kind"),
            "class_names": [str(c) for c in meta.get("class_names", [])],
            "image_size": meta.get("image_size"), "channels": meta.get("channels"),
            "model": meta.get("model"), "metrics": meta.get("metrics"), "layers": meta.get("layers") or [],
            "signatures": sorted(servable.signatures),
            "explain": "explain" in servable.signatures and bool(meta.get("explain")),
        })
    return {"models": models, "max_body": serving_app.config.max_body_bytes}


def page_routes(serving_app) -> list[Route]:
    async def index(request: Request) -> Response:
        return _file("index.html")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in FILES:
            return JSONResponse({"error": f"no such file: /static/{name[:80]}"}, status_code=404)
        return _file(name)

    async def models(request: Request) -> Response:
        return JSONResponse(model_list(serving_app), headers={"Cache-Control": "no-cache"})

    return [Route("/", index, methods=["GET"]),
            Route("/static/{name}", static, methods=["GET"]),
            Route("/cnnapp/models", models, methods=["GET"])]
