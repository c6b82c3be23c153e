"""Prepare the prebuilt OHIF viewer to be served under ``/viewer/``.

    .venv/bin/python -m viewer.build [--package DIR] [--target DIR] [--force]

``@ohif/app`` ships a built ``dist/`` that assumes it is served at ``/``: its
``index.html`` says ``window.PUBLIC_URL="/"`` and names its scripts, styles and
icons by absolute paths, its webpack runtimes load chunks, workers and wasm codecs
from ``__webpack_require__.p = "/"``, and its stylesheet asks for fonts at
``url(/…)``.  This copies ``dist/`` into ``settings.VIEWER_DIR`` and rewrites
exactly those places to the sub-path.  The package's own ``app-config.js`` is
dropped: the app generates the configuration per request (``viewer.views``), with
``routerBasename`` set to the same sub-path.

Every required rewrite must find what it expects, or the build stops with a
non-zero exit and says which file and pattern: a new OHIF version that spells
them differently fails ``make install`` instead of serving a viewer whose chunks
404.  The result is built beside the target and swapped in whole, so a running
server never serves a half-rewritten bundle; it is skipped when the prepared copy
is of the same package version, sub-path and builder.  Scripts, styles and wasm
codecs are also written gzip-compressed beside themselves (``name.gz``) for the
views to send to browsers that accept it.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Where the viewer is served; teleradiology/urls.py mounts viewer.urls here.
URL_PREFIX = "/viewer/"
# OHIF's router wants the prefix without its trailing slash.
ROUTER_BASENAME = URL_PREFIX.rstrip("/")
# Written last into the prepared folder; the views treat the folder as prepared
# only when it is there.
MARKER = ".prepared.json"
PACKAGE = Path("node_modules") / "@ohif" / "app"


class BundleChanged(Exception):
    """The bundle does not look as this builder expects (a new OHIF version?)."""


@dataclass(frozen=True)
class Rewrite:
    """One textual rewrite: ``pattern`` in the files ``glob`` names (relative to the
    bundle's root), found between ``at_least`` and ``at_most`` times in all of them
    together (``at_most`` None: no upper bound)."""

    name: str
    why: str
    glob: str
    pattern: re.Pattern[str]
    replace: Callable[[re.Match[str]], str]
    at_least: int = 1
    at_most: int | None = None


def rewrites(prefix: str) -> list[Rewrite]:
    """The rewrites that move a bundle built for ``/`` to ``prefix`` (``/x/``)."""
    public_path = re.compile(r'__webpack_require__\.p\s*=\s*"/"\s*;')
    return [
        Rewrite(
            "PUBLIC_URL",
            "index.html tells the app where it is served (window.PUBLIC_URL)",
            "index.html",
            re.compile(r'window\.PUBLIC_URL\s*=\s*"/"'),
            lambda m: f'window.PUBLIC_URL="{prefix}"',
        ),
        Rewrite(
            "src/href",
            "index.html names its scripts, styles and icons by absolute path",
            "index.html",
            # src="/x", href="/x", content="/assets/…" (tile icons); not "//host".
            re.compile(r'(\s(?:src|href|content)=")/(?!/)'),
            lambda m: f"{m.group(1)}{prefix}",
        ),
        Rewrite(
            "app public path",
            "the app bundle's webpack runtime loads chunks and wasm from its public path",
            "app.bundle.*.js",
            public_path,
            lambda m: f'__webpack_require__.p = "{prefix}";',
            at_most=1,
        ),
        Rewrite(
            "worker public paths",
            "the worker bundles' webpack runtimes load their chunks from the public path",
            "*.bundle.*.js",
            public_path,
            lambda m: f'__webpack_require__.p = "{prefix}";',
            at_least=0,
        ),
        Rewrite(
            "font url()",
            "the stylesheet asks for its font at an absolute url()",
            "app.bundle.css",
            re.compile(r"url\(\s*/(?!/)"),
            lambda m: f"url({prefix}",
        ),
        Rewrite(
            "microscopy import",
            "the microscopy mode imports its viewer library by absolute path",
            "app.bundle.*.js",
            re.compile(r"""(["'])/dicom-microscopy-viewer/"""),
            lambda m: f"{m.group(1)}{prefix}dicom-microscopy-viewer/",
            at_least=0,
        ),
        Rewrite(
            "manifest icons",
            "the web app manifest names its icons by absolute path",
            "manifest.json",
            re.compile(r'"/assets/'),
            lambda m: f'"{prefix}assets/',
            at_least=0,
        ),
    ]


def leftovers(prefix: str) -> list[tuple[str, re.Pattern[str], str]]:
    """What must not be left after the rewrites, whatever the version: (files,
    pattern, what it is)."""
    rest = re.escape(prefix.lstrip("/"))
    return [
        ("*.js", re.compile(r'__webpack_require__\.p\s*=\s*"/"'), "a webpack public path of /"),
        ("index.html", re.compile(rf'\s(?:src|href)="/(?!/)(?!{rest})'), "an absolute src/href"),
        ("*.css", re.compile(rf"url\(\s*/(?!/)(?!{rest})"), "an absolute url()"),
    ]


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise BundleChanged(message)


def _read(path: Path) -> str:
    # Bytes, not read_text(): no newline translation, the files stay as shipped.
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleChanged(f"{path.name} is not UTF-8 text: {exc}") from exc


def _check_shipped_config(root: Path) -> None:
    """The configuration we replace must still be the format we generate."""
    config = root / "app-config.js"
    _expect(config.is_file(), "the bundle has no app-config.js")
    text = _read(config)
    for key in ("window.config", "routerBasename", "dataSources", "showStudyList"):
        _expect(key in text, f"app-config.js no longer mentions {key}")
    # The app serves its own configuration: no stale copy to shadow it.
    config.unlink()


def rewrite(root: Path, *, prefix: str = URL_PREFIX) -> dict[str, int]:
    """Rewrite the bundle under ``root`` in place for ``prefix``; the number of
    replacements per rule.  Raises BundleChanged when the bundle is not as expected."""
    _expect(prefix.startswith("/") and prefix.endswith("/"), f"bad prefix {prefix!r}")
    _expect((root / "index.html").is_file(), f"{root} has no index.html")
    apps = sorted(root.glob("app.bundle.*.js"))
    _expect(len(apps) == 1, f"expected one app.bundle.*.js in {root}, found {len(apps)}")
    _check_shipped_config(root)

    texts: dict[Path, str] = {}
    counts: dict[str, int] = {}
    for rule in rewrites(prefix):
        found = 0
        for path in sorted(root.glob(rule.glob)):
            text = texts[path] if path in texts else _read(path)
            texts[path], n = rule.pattern.subn(rule.replace, text)
            found += n
        if found < rule.at_least or (rule.at_most is not None and found > rule.at_most):
            wanted = f"{rule.at_least}..{'' if rule.at_most is None else rule.at_most}"
            raise BundleChanged(
                f"{rule.why}: expected {wanted} of /{rule.pattern.pattern}/ in {rule.glob}, "
                f"found {found}"
            )
        counts[rule.name] = found
    for path, text in texts.items():
        path.write_bytes(text.encode("utf-8"))

    for glob, pattern, what in leftovers(prefix):
        for path in sorted(root.glob(glob)):
            match = pattern.search(_read(path))
            _expect(match is None, f"{path.name} still has {what}: {match and match.group(0)!r}")
    return counts


# Served gzip-compressed to browsers that accept it (a reader far away loads ~50 MB of
# scripts and codecs once, ~10 MB compressed); compressed here, once, beside each file.
COMPRESSIBLE = frozenset({".js", ".mjs", ".css", ".wasm", ".json", ".jsonc", ".svg"})
COMPRESS_MIN_BYTES = 1024


def compress(root: Path) -> int:
    """Write ``name.gz`` beside each compressible file under ``root``; how many."""
    written = 0
    for path in sorted(root.rglob("*")):
        if path.suffix in COMPRESSIBLE and path.is_file():
            data = path.read_bytes()
            if len(data) >= COMPRESS_MIN_BYTES:
                # mtime=0: the same input gives the same bytes.
                packed = gzip.compress(data, compresslevel=6, mtime=0)
                if len(packed) < len(data):
                    path.with_name(path.name + ".gz").write_bytes(packed)
                    written += 1
    return written


def _builder_digest() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def _marker(package: Path, prefix: str) -> dict[str, str]:
    try:
        meta = json.loads((package / "package.json").read_text(encoding="utf-8"))
        name = f"{meta['name']}@{meta['version']}"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleChanged(f"{package}/package.json is unreadable: {exc!r}") from exc
    return {"package": name, "prefix": prefix, "builder": _builder_digest()}


def read_marker(target: Path) -> dict[str, str] | None:
    """What the prepared folder at ``target`` was built from; None if not prepared."""
    try:
        data = json.loads((target / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def prepare(package: Path, target: Path, *, prefix: str = URL_PREFIX, force: bool = False) -> str:
    """Copy ``package``/dist to ``target`` rewritten for ``prefix``; what was done."""
    source = package / "dist"
    if not (source / "index.html").is_file():
        raise BundleChanged(f"{source} has no index.html: run `npm ci` (make install)")
    marker = _marker(package, prefix)
    if not force and read_marker(target) == marker:
        return f"{target} is up to date ({marker['package']})"

    target.parent.mkdir(parents=True, exist_ok=True)
    building = target.with_name(f".{target.name}.building-{os.getpid()}")
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    try:
        shutil.copytree(source, building)
        counts = rewrite(building, prefix=prefix)
        counts["compressed"] = compress(building)
        (building / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    # Swap: the old copy is moved aside (not deleted) first, so the folder is
    # missing only between two renames.
    if target.exists():
        target.rename(old)
    building.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    done = ", ".join(f"{name}: {n}" for name, n in counts.items())
    return f"prepared {marker['package']} in {target} for {prefix} ({done})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m viewer.build", description=__doc__)
    parser.add_argument("--package", type=Path, help="the @ohif/app package folder")
    parser.add_argument("--target", type=Path, help="where to prepare it (VIEWER_DIR)")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)

    package, target = args.package, args.target
    if package is None or target is None:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "teleradiology.settings")
        from django.conf import settings

        package = package or Path(settings.BASE_DIR) / PACKAGE
        target = target or Path(settings.VIEWER_DIR)
    try:
        print(prepare(package, target, force=args.force))
    except BundleChanged as exc:
        print(
            f"viewer.build: the OHIF bundle is not as expected, nothing was changed: {exc}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
