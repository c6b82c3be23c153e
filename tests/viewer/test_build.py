"""viewer.build: the bundle is rewritten for /viewer/, and a bundle that is not as
expected (a new OHIF version) stops the build loudly and leaves the served copy alone."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools import ROOT
from tests.viewer.conftest import APP_BUNDLE, FILES, RUNTIME, WORKER_BUNDLE, make_package
from viewer.build import MARKER, BundleChanged, prepare, read_marker


def test_prepare_rewrites_every_absolute_path_for_the_sub_path(
    package: Path, tmp_path: Path
) -> None:
    target = tmp_path / "viewer"
    done = prepare(package, target)
    assert "prepared @ohif/app@3.13.2" in done

    index = (target / "index.html").read_text()
    assert index.count('window.PUBLIC_URL="/viewer/"') == 2
    assert 'src="/viewer/app-config.js"' in index
    assert f'src="/viewer/{APP_BUNDLE}"' in index
    assert 'href="/viewer/app.bundle.css"' in index
    assert 'href="/viewer/manifest.json"' in index
    assert 'content="/viewer/assets/mstile-144x144.png"' in index
    assert 'src="/' not in index.replace('src="/viewer/', "")
    assert 'href="/' not in index.replace('href="/viewer/', "")
    for bundle in (APP_BUNDLE, WORKER_BUNDLE):
        assert '__webpack_require__.p = "/viewer/";' in (target / bundle).read_text()
    assert "'/viewer/dicom-microscopy-viewer/v.min.js'" in (target / APP_BUNDLE).read_text()
    assert "url(/viewer/a34f9d1faa5f3315.woff2)" in (target / "app.bundle.css").read_text()
    assert json.loads((target / "manifest.json").read_text())["icons"][0]["src"] == (
        "/viewer/assets/android-chrome-36x36.png"
    )
    # The app generates the configuration; the package's must not shadow it.
    assert not (target / "app-config.js").exists()
    # Binary files are copied as they are.
    assert (target / "0ddf166f7a343eda.wasm").read_bytes() == FILES["0ddf166f7a343eda.wasm"]
    marker = read_marker(target)
    assert marker is not None
    assert (marker["package"], marker["prefix"]) == ("@ohif/app@3.13.2", "/viewer/")
    # Scripts big enough are also there gzip-compressed, as rewritten; small files and
    # formats that are compressed already are not.
    assert gzip.decompress((target / f"{APP_BUNDLE}.gz").read_bytes()) == (
        (target / APP_BUNDLE).read_bytes()
    )
    assert not (target / f"{WORKER_BUNDLE}.gz").exists()
    assert not (target / "a34f9d1faa5f3315.woff2.gz").exists()
    # Nothing is left beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["package", "viewer"]


def test_prepare_is_skipped_when_current_and_redone_when_forced_or_upgraded(
    package: Path, tmp_path: Path
) -> None:
    target = tmp_path / "viewer"
    prepare(package, target)
    (target / "stale").write_text("from before")
    assert "up to date" in prepare(package, target)
    assert (target / "stale").exists()

    assert "prepared" in prepare(package, target, force=True)
    assert not (target / "stale").exists()

    (package / "package.json").write_text(json.dumps({"name": "@ohif/app", "version": "3.13.3"}))
    (target / "stale").write_text("from before")
    assert "prepared @ohif/app@3.13.3" in prepare(package, target)
    assert not (target / "stale").exists()


def _without(name: str, old: str, new: str) -> dict[str, str | bytes]:
    files = dict(FILES)
    text = files[name]
    assert isinstance(text, str) and old in text
    files[name] = text.replace(old, new)
    return files


UNEXPECTED = {
    "no PUBLIC_URL": (
        _without("index.html", 'window.PUBLIC_URL="/"', 'window.PUBLIC_URL="./"'),
        "window.PUBLIC_URL",
    ),
    "public path spelled otherwise": (
        _without(APP_BUNDLE, '__webpack_require__.p = "/";', 'r.p="/";'),
        "app bundle's webpack runtime",
    ),
    "two app bundles": (
        {**FILES, "app.bundle.1111111111111111.js": RUNTIME},
        "expected one app.bundle.*.js",
    ),
    "font url spelled otherwise": (
        _without("app.bundle.css", "url(/", "url("),
        "absolute url()",
    ),
    "worker public path left over": (
        _without(WORKER_BUNDLE, '"/";', '"/"\n'),
        "still has a webpack public path of /",
    ),
    "another configuration format": (
        _without("app-config.js", "routerBasename", "basename"),
        "no longer mentions routerBasename",
    ),
    "no app-config.js": (
        {k: v for k, v in FILES.items() if k != "app-config.js"},
        "no app-config.js",
    ),
}


@pytest.mark.parametrize("case", sorted(UNEXPECTED))
def test_an_unexpected_bundle_fails_and_leaves_the_prepared_copy_alone(
    case: str, tmp_path: Path
) -> None:
    files, message = UNEXPECTED[case]
    target = tmp_path / "viewer"
    prepare(make_package(tmp_path / "good"), target)
    before = sorted(p.name for p in target.iterdir())
    marker = read_marker(target)

    with pytest.raises(BundleChanged, match=message.replace("(", r"\(").replace(")", r"\)")):
        # A new version: the prepared copy is not current, so the build runs.
        prepare(make_package(tmp_path / "new", files, version="3.14.0"), target)

    assert sorted(p.name for p in target.iterdir()) == before
    assert read_marker(target) == marker
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good", "new", "viewer"]


def _build(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "viewer.build", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_command_exits_non_zero_and_says_why_on_an_unexpected_bundle(tmp_path: Path) -> None:
    files = _without(APP_BUNDLE, '__webpack_require__.p = "/";', "")
    package = make_package(tmp_path, files)
    result = _build("--package", str(package), "--target", str(tmp_path / "viewer"))
    assert result.returncode == 1
    assert "the OHIF bundle is not as expected" in result.stderr
    assert "public path" in result.stderr
    assert not (tmp_path / "viewer").exists()


def test_the_command_prepares_a_good_bundle(package: Path, tmp_path: Path) -> None:
    result = _build("--package", str(package), "--target", str(tmp_path / "viewer"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "viewer" / MARKER).is_file()


def test_a_package_that_was_never_installed_is_reported(tmp_path: Path) -> None:
    result = _build("--package", str(tmp_path / "nothing"), "--target", str(tmp_path / "v"))
    assert result.returncode == 1
    assert "npm ci" in result.stderr


def test_the_lockfile_pins_the_viewer_alone_at_an_exact_version() -> None:
    manifest = json.loads((ROOT / "package.json").read_text())
    lock = json.loads((ROOT / "package-lock.json").read_text())
    version = manifest["dependencies"]["@ohif/app"]
    assert version.startswith("3.13.") and version.replace(".", "").isdigit()
    entry = lock["packages"]["node_modules/@ohif/app"]
    assert entry["version"] == version
    assert entry["resolved"].endswith(f"/app-{version}.tgz")
    assert entry["integrity"].startswith("sha512-")
    # Only the prebuilt dist/ is used; the package's (build) dependencies are not fetched.
    assert set(lock["packages"]) == {"", "node_modules/@ohif/app"}
    assert "node_modules/" in (ROOT / ".gitignore").read_text().splitlines()
