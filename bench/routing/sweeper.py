"""One sweeper process of the routing fault test (``python -m bench.routing.sweeper``,
started by the benchmark, two at once): ``routing_sweep()`` and
``offers_withdraw_ineligible()`` in a loop from ``--start-at`` until the stop file
appears (or ``--max-seconds``), one JSON line per loop in ``--out``."""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def argv(
    *, out: Path, stop: Path, start_at: float, interval: float, max_seconds: float
) -> list[str]:
    """The command line that starts one sweeper."""
    return [
        sys.executable, "-m", "bench.routing.sweeper",
        "--out", str(out), "--stop", str(stop), "--start-at", f"{start_at:.3f}",
        "--interval", str(interval), "--max-seconds", str(max_seconds),
    ]  # fmt: skip


def main(args: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--stop", type=Path, required=True)
    p.add_argument("--start-at", type=float, default=0.0, help="epoch seconds")
    p.add_argument("--interval", type=float, default=0.5)
    p.add_argument("--max-seconds", type=float, default=600.0)
    a = p.parse_args(args)
    import django

    django.setup()
    from routing.services import offers_withdraw_ineligible, routing_sweep

    while time.time() < a.start_at:
        time.sleep(0.005)
    deadline = time.monotonic() + a.max_seconds
    with a.out.open("a") as fh:
        while not a.stop.exists() and time.monotonic() < deadline:
            t0 = time.perf_counter()
            record: dict[str, Any] = {"at": time.time()}
            try:
                record.update(routing_sweep())
                # Beat runs it every OFFER_ELIGIBILITY_SWEEP_SECONDS; here every loop.
                record["offers_withdrawn"] = offers_withdraw_ineligible()
            except Exception as exc:  # recorded and counted
                record["error"] = f"{type(exc).__name__}: {exc}"
                record["traceback"] = traceback.format_exc()[-2000:]
            record["seconds"] = time.perf_counter() - t0
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            time.sleep(a.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
