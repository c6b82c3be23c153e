"""A small stand-in for ``@ohif/app``: the places viewer.build rewrites, spelled as
3.13's dist/ spells them, and a file of each kind the views serve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from viewer.build import prepare

APP_BUNDLE = "app.bundle.0f6159c501addfe9.js"
WORKER_BUNDLE = "compute.bundle.0fc3a3ee85296cf2.js"
FONT = "a34f9d1faa5f3315.woff2"
WASM = "0ddf166f7a343eda.wasm"
WASM_BYTES = b"\0asm\x01\0\0\0"

INDEX = (
    '<!doctype html><html lang="en"><head>'
    '<meta name="msapplication-TileImage" content="/assets/mstile-144x144.png">'
    '<script>console.time("scriptToView"),window.PUBLIC_URL="/"</script>'
    '<link rel="manifest" href="/manifest.json">'
    '<link rel="icon shortcut" href="/assets/favicon.ico">'
    '<script rel="preload" as="script" src="/app-config.js"></script>'
    "<title>OHIF Viewer</title>"
    '<script>function browserImportFunction(n){return import(n)}window.PUBLIC_URL="/"</script>'
    f'<script defer src="/{APP_BUNDLE}"></script>'
    '<link href="/app.bundle.css" rel="stylesheet"></head>'
    '<body><div id="root"></div></body></html>'
)
RUNTIME = '// webpack/runtime/public_path\n(() => {\n__webpack_require__.p = "/";\n})();\n'
FILES: dict[str, str | bytes] = {
    "index.html": INDEX,
    APP_BUNDLE: RUNTIME
    + "const m = await window.browserImportFunction('/dicom-microscopy-viewer/v.min.js');\n"
    + "// the rest of the app\n" * 200,
    WORKER_BUNDLE: RUNTIME,
    "app.bundle.css": f"@font-face{{font-family:Inter;src:url(/{FONT}) format('woff2')}}",
    "app-config.js": (
        "window.config = {\n  routerBasename: null,\n  showStudyList: true,\n"
        "  dataSources: [],\n};\n"
    ),
    "manifest.json": json.dumps({"icons": [{"src": "/assets/android-chrome-36x36.png"}]}),
    "assets/favicon.ico": b"\0\0\1\0",
    FONT: b"wOF2 font",
    WASM: WASM_BYTES,
}


def make_package(
    root: Path, files: dict[str, str | bytes] | None = None, *, version: str = "3.13.2"
) -> Path:
    """An @ohif/app package folder under ``root`` with ``files`` in its dist/."""
    package = root / "package"
    (package / "dist").mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"name": "@ohif/app", "version": version}))
    for name, content in (FILES if files is None else files).items():
        path = package / "dist" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return package


@pytest.fixture
def package(tmp_path: Path) -> Path:
    return make_package(tmp_path)


@pytest.fixture
def prepared(package: Path, tmp_path: Path, settings: Any) -> Path:
    """The stand-in prepared as make install would, and the app pointed at it."""
    target = tmp_path / "var" / "viewer"
    prepare(package, target)
    settings.VIEWER_DIR = target
    return target
