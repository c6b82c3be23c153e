"""Settings from the environment: a production profile refuses development defaults."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _manage(*args, **env):
    clean = {
        k: v
        for k, v in os.environ.items()
        # DJANGO_ALLOW_ASYNC_UNSAFE is set by the browser tests' Playwright fixture.
        if k
        not in {"DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_refuses_development_defaults():
    result = _manage("check", DJANGO_ENV="production")
    assert result.returncode != 0
    for problem in ("SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL"):
        assert problem in result.stderr


def test_production_refuses_debug():
    result = _manage(
        "check",
        DJANGO_ENV="production",
        DEBUG="true",
        SECRET_KEY=secrets.token_urlsafe(60),
        ALLOWED_HOSTS="telerad.example.org",
        DATABASE_URL="postgres://u@db/x",
        REDIS_URL="redis://cache:6379/0",
    )
    assert result.returncode != 0
    assert "DEBUG must be off" in result.stderr


def test_production_passes_the_deploy_check():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(60),
        ALLOWED_HOSTS="telerad.example.org",
        DATABASE_URL="postgres://u@db/x",
        REDIS_URL="redis://cache:6379/0",
    )
    assert result.returncode == 0, result.stderr + result.stdout


def _gunicorn_check(**env):
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "GUNICORN_BIND"}
    }
    return subprocess.run(
        [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--check-config"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION_ENV = {
    "DJANGO_ENV": "production",
    "ALLOWED_HOSTS": "telerad.example.org",
    "DATABASE_URL": "postgres://u@db/x",
    "REDIS_URL": "redis://cache:6379/0",
}


def test_production_web_server_needs_its_interface_named():
    result = _gunicorn_check(SECRET_KEY=secrets.token_urlsafe(60), **PRODUCTION_ENV)
    assert result.returncode != 0
    assert "set GUNICORN_BIND" in result.stdout + result.stderr


def test_production_web_server_listens_where_it_is_told():
    result = _gunicorn_check(
        SECRET_KEY=secrets.token_urlsafe(60), GUNICORN_BIND="10.1.2.3:8000", **PRODUCTION_ENV
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_development_web_server_listens_on_this_machine_only():
    import runpy

    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    if not os.environ.get("GUNICORN_BIND"):
        assert config["bind"] == ["127.0.0.1:8000"]
