"""The viewer's pages: its configuration, its routes (the prepared index.html) and its
static files, all under ``/viewer/``.

The routes and the configuration need a signed-in user; the static files are the
public OHIF bundle and are served to anyone, with long cache lifetimes.  The
viewer shows only what ``/dicomweb/`` answers for the user, so gating the page is
enough.  A server where ``make install`` has not prepared the viewer answers 503.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotModified,
    HttpResponseRedirect,
)
from django.shortcuts import redirect, render
from django.utils.http import http_date
from django.views.decorators.http import require_safe
from django.views.static import was_modified_since

from viewer.build import COMPRESSIBLE, MARKER, URL_PREFIX
from viewer.config import DICOMWEB_PATH, app_config_js

logger = logging.getLogger(__name__)

# The default mode's route; /viewer/?StudyInstanceUIDs=… is sent there.
STUDY_ROUTE = f"{URL_PREFIX}viewer"

# Content types by suffix, not by the host's /etc/mime.types: a browser refuses to
# compile a wasm codec streamed as anything but application/wasm.
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".wasm": "application/wasm",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ttf": "font/ttf",
    ".json": "application/json",
    ".jsonc": "application/json",
    ".map": "application/json",
    ".webapp": "application/x-web-app-manifest+json",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".gif": "image/gif",
    ".ico": "image/x-icon",
    ".xml": "application/xml",
    ".txt": "text/plain; charset=utf-8",
    ".gz": "application/gzip",
}
# A path ending in one of these is a file: missing, it is a 404, not the app page.
ASSET_SUFFIXES = frozenset(CONTENT_TYPES) | {".onnx", ".data", ".bin"}
# Names carrying a content hash (app.bundle.0f6159c501addfe9.js, a34f9d1faa5f3315.woff2)
# never change; the others (app.bundle.css, assets/…) may on an upgrade.
HASHED = re.compile(r"(?:^|\.)[0-9a-f]{16}\.[A-Za-z0-9]+$")
CACHE_HASHED = "public, max-age=31536000, immutable"
CACHE_OTHER = "public, max-age=86400"

# The page may load and fetch from this origin only: features of the bundle that would
# fetch elsewhere (AI segmentation models, itk-wasm pipelines from a CDN) fail instead
# of sending anything out.  OHIF needs inline scripts (index.html), eval and wasm
# compilation (codecs), blob: workers and inline styles.  No cross-origin isolation
# (COOP/COEP) on purpose: OHIF does without SharedArrayBuffer, and COOP would cut the
# viewer off from the worklist that opened it (the named window that a study's "open
# images" link reuses would lose its name).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' 'unsafe-eval' 'wasm-unsafe-eval' blob:",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self' data: blob:",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'self'",
    ]
)


def prepared_root() -> Path | None:
    """The prepared viewer folder, or None when ``make install`` has not made it."""
    root = Path(settings.VIEWER_DIR)
    if (root / MARKER).is_file() and (root / "index.html").is_file():
        return root
    return None


def _not_prepared(request: HttpRequest) -> HttpResponse:
    logger.error(
        "the viewer is not prepared in %s: run `make install` (python -m viewer.build)",
        settings.VIEWER_DIR,
    )
    return render(request, "viewer/not_prepared.html", status=503)


@require_safe
@login_required
def app_config(request: HttpRequest) -> HttpResponse:
    """OHIF's configuration: our same-origin DICOMweb as its only data source."""
    script = app_config_js(dicomweb_root=request.build_absolute_uri(DICOMWEB_PATH))
    response = HttpResponse(script, content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response


@require_safe
@login_required
def home(request: HttpRequest) -> HttpResponseBase:
    """``/viewer/?StudyInstanceUIDs=…`` opens the study in the default mode; with no
    study, the user's home page (the viewer has no study list)."""
    # OHIF reads either spelling.
    if not (request.GET.get("StudyInstanceUIDs") or request.GET.get("studyInstanceUIDs")):
        return redirect("home")
    # Our own path and the query as sent: not an open redirect.
    return HttpResponseRedirect(f"{STUDY_ROUTE}?{request.META['QUERY_STRING']}")


@login_required
def _app_page(request: HttpRequest) -> HttpResponseBase:
    """The viewer's index.html, for every OHIF route under /viewer/."""
    root = prepared_root()
    if root is None:
        return _not_prepared(request)
    response = HttpResponse(
        (root / "index.html").read_bytes(), content_type="text/html; charset=utf-8"
    )
    response["Cache-Control"] = "no-store"
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


def _asset_path(root: Path, path: str) -> Path | None:
    """The file ``path`` names inside ``root``; None if none (or outside, or hidden)."""
    parts = PurePosixPath(path).parts
    if not parts or any(part.startswith(".") for part in parts):
        return None
    candidate = root.joinpath(*parts).resolve()
    if not candidate.is_relative_to(root.resolve()) or not candidate.is_file():
        return None
    return candidate


def _accepts_gzip(request: HttpRequest) -> bool:
    """Whether the request's Accept-Encoding names gzip with a weight above 0."""
    for coding in request.META.get("HTTP_ACCEPT_ENCODING", "").split(","):
        name, _, params = coding.partition(";")
        if name.strip().lower() != "gzip":
            continue
        weight = params.strip().lower()
        if not weight.startswith("q="):
            return True
        try:
            return float(weight[2:]) > 0
        except ValueError:
            return False
    return False


def _asset(request: HttpRequest, file: Path) -> HttpResponseBase:
    stat = file.stat()
    packed = file.with_name(file.name + ".gz")
    compressible = file.suffix in COMPRESSIBLE and packed.is_file()
    if not was_modified_since(request.META.get("HTTP_IF_MODIFIED_SINCE"), stat.st_mtime):
        response: HttpResponseBase = HttpResponseNotModified()
    else:
        content_type = CONTENT_TYPES.get(file.suffix.lower(), "application/octet-stream")
        if compressible and _accepts_gzip(request):
            response = FileResponse(
                packed.open("rb"), content_type=content_type, filename=file.name
            )
            response["Content-Encoding"] = "gzip"
        else:
            response = FileResponse(file.open("rb"), content_type=content_type, filename=file.name)
        response["Last-Modified"] = http_date(stat.st_mtime)
    if compressible:
        response["Vary"] = "Accept-Encoding"
    response["Cache-Control"] = CACHE_HASHED if HASHED.search(file.name) else CACHE_OTHER
    return response


@require_safe
def file_or_route(request: HttpRequest, path: str) -> HttpResponseBase:
    """A file of the bundle, or else one of the viewer's routes (its index.html)."""
    suffix = PurePosixPath(path).suffix.lower()
    if PurePosixPath(path).name == "index.html":
        return _app_page(request)
    root = prepared_root()
    if suffix in ASSET_SUFFIXES:
        if root is None:
            return _not_prepared(request)
        file = _asset_path(root, path)
        if file is None:
            raise Http404("No such file in the viewer.")
        return _asset(request, file)
    return _app_page(request)
