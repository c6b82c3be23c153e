"""Run fuzz cases against the gateway and list what it got wrong (shared by the test
and ``bench/ingest/fuzz.py``).

The oracle is the judge: what it calls defective must be refused, and every
refusal must leave the object in quarantine; the intact controls must be stored.
The rules are checked on plain data (statuses, quarantine rows, stored UIDs,
files), so the caller decides how to read the database.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.ingest.fuzz import oracle
from tests.ingest.fuzz.mutate import Case
from tests.ingest.fuzz.sender import Lost, Outcome, StoreSender

SUCCESS = 0x0000


def status_name(outcome: Outcome) -> str:
    return str(outcome) if isinstance(outcome, Lost) else f"0x{outcome:04X}"


@dataclass(frozen=True)
class Result:
    """One case as sent: what the gateway answered and what the oracle found."""

    case: Case
    outcome: Outcome
    defects: tuple[str, ...]
    seconds: float

    @property
    def defective(self) -> bool:
        return bool(self.defects)

    @property
    def success(self) -> bool:
        return self.outcome == SUCCESS

    @property
    def warning(self) -> bool:
        return isinstance(self.outcome, int) and 0xB000 <= self.outcome <= 0xBFFF

    @property
    def refused(self) -> bool:
        """Answered with a failure status (neither success nor a warning)."""
        return isinstance(self.outcome, int) and not self.success and not self.warning

    @property
    def categories(self) -> set[oracle.Category]:
        return {oracle.category_of(d) for d in self.defects}


def run(
    cases: Iterable[Case],
    sender: StoreSender,
    *,
    progress: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Judge each case with the oracle, send it, and record the answer."""
    results = []
    for case in cases:
        defects = tuple(
            oracle.check(
                case.dataset,
                transfer_syntax=case.transfer_syntax,
                request_sop_class=case.sop_class,
                request_sop_instance=case.sop_instance,
            )
        )
        started = time.perf_counter()
        outcome = sender.send(
            dataset=case.dataset,
            transfer_syntax=case.transfer_syntax,
            sop_class=case.sop_class,
            sop_instance=case.sop_instance,
        )
        result = Result(case, outcome, defects, time.perf_counter() - started)
        results.append(result)
        if progress is not None:
            progress(result)
    return results


@dataclass(frozen=True)
class Quarantined:
    """A quarantine row, as the checks need it."""

    storage_key: str
    sop_instance_uid: str


@dataclass(frozen=True)
class Violation:
    rule: str
    case: str  # the case's name, or "" for the run as a whole
    detail: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.case or 'run'}: {self.detail}"


def violations(
    results: Sequence[Result],
    *,
    quarantined: Sequence[Quarantined],
    quarantined_before: int,
    stored_instances: set[str],
    storage_root: Path,
    listener_alive: bool,
    final_echo: Outcome,
) -> list[Violation]:
    """Every broken rule, per case where there is one."""
    found: list[Violation] = []
    if not listener_alive:
        found.append(Violation("listener", "", "the listener process has exited"))
    if final_echo != SUCCESS:
        found.append(Violation("listener", "", f"a final C-ECHO got {status_name(final_echo)}"))
    refused = [r for r in results if r.refused]
    for r in results:
        name, status = r.case.name, status_name(r.outcome)
        if r.outcome is Lost.NO_CONTEXT:
            # The gateway refused the presentation context: the case was never sent.
            found.append(Violation("not-sent", name, f"{status} for {r.case.transfer_syntax}"))
        elif isinstance(r.outcome, Lost):
            found.append(Violation("lost", name, f"{status}; {r.case.detail}"))
        elif r.defective and (r.success or r.warning):
            found.append(Violation("accepted-defective", name, f"{status}: {r.defects[0]}"))
        elif isinstance(r.outcome, int) and 0xA700 <= r.outcome <= 0xA7FF:
            found.append(Violation("out-of-resources", name, f"{status}; {r.case.detail}"))
        if r.case.control and not r.success:
            found.append(Violation("control", name, f"{status} for an intact {r.case.variant}"))
        elif r.case.control and r.case.data_sop_instance not in stored_instances:
            found.append(Violation("control", name, "answered Success but no Instance row"))
    added = len(quarantined) - quarantined_before
    if added != len(refused):
        found.append(
            Violation(
                "quarantine-count",
                "",
                f"{added} quarantine rows were added for {len(refused)} failure answers",
            )
        )
    found += _evidence(refused, quarantined, storage_root)
    staging = storage_root / ".staging"
    # Each listener process stages into a folder of its own under .staging.
    left = sorted(p.name for p in staging.rglob("*") if p.is_file()) if staging.is_dir() else []
    if left:
        found.append(
            Violation(
                "staging",
                "",
                f"{len(left)} files left in {staging} (received, never filed or "
                f"removed), e.g. {left[0]}",
            )
        )
    return found


def _evidence(
    refused: Sequence[Result], rows: Sequence[Quarantined], storage_root: Path
) -> list[Violation]:
    """Each refused object is in quarantine: a row whose file ends with the bytes sent."""
    found = []
    by_uid: dict[str, list[Quarantined]] = {}
    for row in rows:
        by_uid.setdefault(row.sop_instance_uid, []).append(row)
    cache: dict[str, bytes | None] = {}
    claimed: set[str] = set()

    def content(row: Quarantined) -> bytes | None:
        if row.storage_key not in cache:
            path = storage_root.joinpath(*row.storage_key.split("/"))
            cache[row.storage_key] = path.read_bytes() if path.is_file() else None
        return cache[row.storage_key]

    for r in refused:
        uid = r.case.sop_instance[:200]
        # The row names the request's SOP Instance UID today; any row may do.
        candidates = by_uid.get(uid, []) + [row for row in rows if row.sop_instance_uid != uid]
        match = next(
            (
                row
                for row in candidates
                if row.storage_key not in claimed
                and (data := content(row)) is not None
                and data.endswith(r.case.dataset)
            ),
            None,
        )
        if match is not None:
            claimed.add(match.storage_key)
            continue
        named = by_uid.get(uid, [])
        if not named:
            detail = f"no quarantined file ends with the {len(r.case.dataset)} bytes sent"
        elif all(content(row) is None for row in named):
            detail = f"quarantine file {named[0].storage_key} does not exist"
        else:
            detail = f"quarantine file {named[0].storage_key} does not end with the bytes sent"
        found.append(Violation("quarantine-evidence", r.case.name, detail))
    return found


def summary(results: Sequence[Result]) -> str:
    """Counts by answer and oracle verdict, and by defect category."""
    by_answer: Counter[tuple[str, str]] = Counter()
    by_category: Counter[str] = Counter()
    for r in results:
        verdict = "control" if r.case.control else "defective" if r.defective else "clean"
        by_answer[(status_name(r.outcome), verdict)] += 1
        for category in r.categories:
            by_category[str(category)] += 1
    lines = [f"{len(results)} cases; answer x oracle verdict:"]
    lines += [
        f"  {answer:>12} {verdict:<9} {n}" for (answer, verdict), n in sorted(by_answer.items())
    ]
    accepted: Counter[str] = Counter()
    for r in results:
        if r.defective and (r.success or r.warning):
            for category in r.categories:
                accepted[str(category)] += 1
    defective = sum(r.defective for r in results)
    lines.append(
        f"defective per the oracle: {defective}; cases with a defect of category "
        "(and of those, answered Success or a warning):"
    )
    lines += [
        f"  {category:<10} {n:>6} ({accepted[category]})"
        for category, n in sorted(by_category.items())
    ]
    return "\n".join(lines)


def report(found: Sequence[Violation], results: Sequence[Result], *, limit: int = 20) -> str:
    """The violations by rule, the first ``limit`` in full, then the summary."""
    rules = Counter(v.rule for v in found)
    lines = [f"{len(found)} violations: " + ", ".join(f"{k} {n}" for k, n in rules.most_common())]
    lines += [f"  {v}" for v in found[:limit]]
    if len(found) > limit:
        lines.append(f"  ... and {len(found) - limit} more")
    lines.append(summary(results))
    return "\n".join(lines)
