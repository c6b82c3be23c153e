"""schemathesis over the whole OpenAPI schema, as each role of the demo.

    DATABASE_URL=postgres://.../teleradiology_fuzz scripts/api_fuzz.py [schemathesis options]

Migrates and seeds the database named by the environment (it must be a scratch
one: the run writes to it), starts the web process as production runs it
(gunicorn), mints a browser session for each demo role (sessions work whatever
the API token model is), and runs ``schemathesis run`` once per role: a bounded,
seeded number of examples per operation, writes included, checking that nothing
answers 5xx and every response fits the schema.  Exits non-zero on any finding.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ROLES = ["superuser", "admin", "admin.harbour", "dr.chen", "staff.stmary"]
MAX_EXAMPLES = os.environ.get("API_FUZZ_EXAMPLES", "3")
SEED = os.environ.get("API_FUZZ_SEED", "16")
CHECKS = "not_a_server_error,response_schema_conformance"
# Signing out ends the session the run is authenticated by; it is tested in tests/.
EXCLUDED = ["/api/v1/auth/logout/"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)  # noqa: S603


def sessions(env: dict[str, str]) -> dict[str, str]:
    """A signed-in session key per role, minted as Django's test client does."""
    code = (
        "import django, json\n"
        "django.setup()\n"
        "from django.contrib.auth.models import User\n"
        "from django.test import Client\n"
        "out = {}\n"
        f"for name in {ROLES!r}:\n"
        "    client = Client()\n"
        "    client.force_login(User.objects.get(username=name),\n"
        "                       backend='django.contrib.auth.backends.ModelBackend')\n"
        "    out[name] = client.cookies['sessionid'].value\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    keys: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1])
    return keys


def wait_for(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the web process exited:\n{log.read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"the web process did not listen:\n{log.read_text()}")


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="api-fuzz-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "teleradiology.settings",
        "VAR_DIR": os.environ.get("VAR_DIR", str(work / "var")),
        "DICOM_STORAGE_ROOT": str(work / "dicom"),
        # The run sends thousands of requests a minute on purpose: throttles off.
        "API_THROTTLE_ANON": "100000/s",
        "API_THROTTLE_USER": "100000/s",
        "API_THROTTLE_CLAIM": "100000/s",
        "API_THROTTLE_SIGN_IN": "100000/s",
        "API_THROTTLE_DICOMWEB": "100000/s",
    }
    manage("migrate", "--noinput", "-v", "0", env=env)
    manage("seed_demo", env=env)
    keys = sessions(env)
    # The schema as CI checks it (manage.py spectacular), not fetched from the server.
    schema = work / "schema.json"
    manage("spectacular", "--format", "openapi-json", "--file", str(schema), env=env)
    port = free_port()
    log = work / "web.log"
    with log.open("w") as out:
        web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py"],
            cwd=ROOT,
            env={
                **env,
                "GUNICORN_BIND": f"127.0.0.1:{port}",
                "WEB_CONCURRENCY": "2",
                "GUNICORN_REUSE_PORT": "false",
            },
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    failed: list[str] = []
    try:
        wait_for(port, web, log)
        for role in ROLES:
            csrf = secrets.token_hex(16)  # a CSRF secret: cookie and header agree
            print(f"\n=== schemathesis as {role} ===", flush=True)
            result = subprocess.run(  # noqa: S603
                [
                    str(BIN / "schemathesis"),
                    "run",
                    str(schema),
                    "--url",
                    f"http://127.0.0.1:{port}",
                    "--checks",
                    CHECKS,
                    "--max-examples",
                    MAX_EXAMPLES,
                    "--seed",
                    SEED,
                    "--phases",
                    "examples,fuzzing",
                    "--no-shrink",
                    # One worker: with two threads, Hypothesis's changes to the recursion
                    # limit race CPython 3.11's ast module ("AST constructor recursion
                    # depth mismatch"), an error of the tool, not of the API.
                    "--workers",
                    "1",
                    "--request-timeout",
                    "30",
                    "--suppress-health-check",
                    "all",
                    "--header",
                    f"Cookie: sessionid={keys[role]}; csrftoken={csrf}",
                    "--header",
                    f"X-CSRFToken: {csrf}",
                    "--header",
                    f"Referer: http://127.0.0.1:{port}/",
                    "--output-truncate",
                    "true",
                    *(arg for path in EXCLUDED for arg in ("--exclude-path", path)),
                    *sys.argv[1:],  # e.g. --include-path ... to re-run one operation
                ],
                cwd=ROOT,
                env=env,
                check=False,
            )
            if result.returncode != 0:
                failed.append(role)
    finally:
        web.terminate()
        web.wait(timeout=30)
    if failed:
        print(f"\nschemathesis found problems as: {', '.join(failed)}")
        print(f"(web log: {log})")
        return 1
    print("\nschemathesis: no server errors and no schema violations, as every role")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
