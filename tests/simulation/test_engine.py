"""The replay engine, pure: a small roster of readers in memory, no database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from routing.eligibility import CandidateFacts, Credential
from routing.rules import RuleKey, StudyKey
from simulation import engine
from simulation.engine import RecordedDecision, SimRule, SimStudy, replay

T0 = dt.datetime(2026, 3, 2, 8, tzinfo=dt.UTC)
LONG_AGO = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
FAR_AHEAD = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
TX = "US-TX"
FACILITY = 7
HOUR = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


@dataclass
class Reader:
    radiologist_id: int
    tier: int = 0
    shifts: list[tuple[dt.datetime, dt.datetime]] = field(
        default_factory=lambda: [(LONG_AGO, FAR_AHEAD)]
    )
    license_ends: dt.datetime = FAR_AHEAD
    workload_cap: int = 5
    subspecialties: frozenset[str] = frozenset({"general"})


class FakeRoster:
    """``engine.Roster`` over readers held in memory (every reader licensed in US-TX
    and privileged at facility 7, each at their own tier)."""

    def __init__(self, readers: Sequence[Reader]) -> None:
        self.readers = {r.radiologist_id: r for r in readers}
        self.facts_asked = 0

    def name(self, radiologist_id: int) -> str:
        return f"Dr {radiologist_id}"

    def on_shift(self, radiologist_id: int, at: dt.datetime) -> bool:
        return any(s <= at < e for s, e in self.readers[radiologist_id].shifts)

    def available(self, radiologist_id: int, at: dt.datetime) -> bool:
        return True

    def next_shift_start(self, radiologist_id: int, after: dt.datetime) -> dt.datetime | None:
        return min((s for s, _ in self.readers[radiologist_id].shifts if s > after), default=None)

    def plausible(self, facility_id: int, jurisdiction: str, at: dt.datetime) -> list[int]:
        if facility_id != FACILITY or jurisdiction != TX:
            return []
        return [r for r in sorted(self.readers) if self.on_shift(r, at)]

    def facts(
        self,
        radiologist_id: int,
        *,
        facility_id: int,
        jurisdiction: str,
        at: dt.datetime,
        open_claims: int,
        recent_work: float,
    ) -> CandidateFacts:
        self.facts_asked += 1
        reader = self.readers[radiologist_id]
        return CandidateFacts(
            radiologist_id=radiologist_id,
            name=self.name(radiologist_id),
            tier=reader.tier,
            active=True,
            available=True,
            on_shift=self.on_shift(radiologist_id, at),
            subspecialties=reader.subspecialties,
            licenses=(Credential(TX, LONG_AGO, reader.license_ends, True),),
            privileges=(Credential(str(FACILITY), LONG_AGO, FAR_AHEAD, True, False),),
            open_claims=open_claims,
            workload_cap=reader.workload_cap,
            recent_work=recent_work,
        )


def rule(
    name: str = "everything",
    *,
    widest_tier: int = 2,
    auto_assign: bool = False,
    fractions: tuple[float, float] = (0.25, 0.5),
) -> SimRule:
    return SimRule(
        key=RuleKey(
            rule_id=1,
            is_default=True,
            facility_ids=frozenset(),
            modalities=frozenset(),
            body_parts=frozenset(),
            description_pattern="",
            procedure_code_pattern="",
            priorities=frozenset(),
            flags=frozenset(),
        ),
        name=name,
        subspecialties=frozenset(),
        allow_general=True,
        allow_preliminary=False,
        bypass_cap_for_stat=False,
        relative_value=1.0,
        auto_assign=auto_assign,
        accept_timeout=5 * MINUTE,
        escalate_fractions=fractions[:widest_tier],
        widest_tier=widest_tier,
        min_tier_wait=MINUTE,
        tier_waits={1: 12 * HOUR, 2: 12 * HOUR, 3: 12 * HOUR},
    )


def study(
    study_id: int,
    minutes: float,
    *,
    priority: int = 3,
    target: dt.timedelta = 4 * HOUR,
    recorded: RecordedDecision | None = None,
) -> SimStudy:
    arrived = at(minutes)
    return SimStudy(
        study_id=study_id,
        label=f"ACC{study_id}",
        key=StudyKey(
            facility_id=FACILITY,
            modality="CT",
            body_part="HEAD",
            description="",
            procedure_code="",
            priority=priority,
            flags=frozenset(),
        ),
        jurisdiction=TX,
        received_at=arrived,
        arrived_at=arrived,
        due_at=arrived + target,
        recorded=recorded,
    )


def run(
    studies: Sequence[SimStudy] | Iterator[SimStudy],
    readers: Sequence[Reader],
    *,
    live: SimRule | None = None,
    draft: SimRule | None = None,
    reading: dict[int, float] | None = None,
    default_minutes: float = 10.0,
    end: dt.datetime | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    live = live or rule()
    return replay(
        studies,
        live=[live],
        draft=[draft or live],
        roster=FakeRoster(readers),
        reading_minutes=reading or {},
        default_reading_minutes=default_minutes,
        window=(T0, end or T0 + 24 * HOUR),
        readers=[r.radiologist_id for r in readers],
        **kwargs,
    )


def test_a_draft_without_the_global_tier_leaves_unroutable_what_live_offers_globally() -> None:
    studies = [study(i, 10 * i) for i in range(1, 7)]
    result = run(
        studies,
        [Reader(1, tier=2), Reader(2, tier=2)],
        live=rule("all tiers"),
        draft=rule("regional at most", widest_tier=1),
    )
    live, draft = result["arms"]["live"], result["arms"]["draft"]
    assert live["unroutable"]["count"] == 0
    assert live["first_offer_by_tier"] == {"0": 0, "1": 0, "2": 6}
    assert live["claimed"] == 6
    assert draft["unroutable"] == {
        "count": 6,
        "never_offered": 6,
        "reasons": [
            [
                f"no radiologist licensed in {TX} with privileges at the facility is on shift "
                "within the rule's widest tier (regional); 2 beyond it",
                6,
            ]
        ],
    }
    assert draft["unroutable"]["count"] > live["unroutable"]["count"]
    assert draft["claimed"] == 0 and draft["unclaimed_at_end"] == 6
    # Every first decision differs, and the sample explains both.
    assert result["elsewhere"]["count"] == 6
    assert result["elsewhere"]["share"] == 1.0
    sample = result["elsewhere"]["sample"]
    assert len(sample) == 6
    assert [s["study_id"] for s in sample] == sorted(s["study_id"] for s in sample)
    first = sample[0]
    assert first["live"]["outcome"] == "offered" and first["live"]["tier"] == 2
    assert first["live"]["reason"] == "offered to 2 reader(s) at the global tier"
    assert {r["radiologist_id"] for r in first["live"]["offered_to"]} == {1, 2}
    assert first["draft"]["outcome"] == "unroutable" and first["draft"]["offered_to"] == []
    assert first["draft"]["rule"] == "regional at most"


def test_the_unroutable_reason_names_the_missing_coverage() -> None:
    result = run(
        [study(1, 0)],
        [Reader(1, tier=2, shifts=[(at(60), at(120))])],
        end=at(30),
    )
    assert result["arms"]["draft"]["unroutable"]["reasons"] == [
        [
            f"no radiologist of the group licensed in {TX} with privileges at the facility "
            "is on shift",
            1,
        ]
    ]


def test_identical_arms_differ_nowhere() -> None:
    studies = [study(i, 7 * i, priority=1 + i % 3) for i in range(1, 200)]
    readers = [Reader(1, tier=0), Reader(2, tier=1), Reader(3, tier=2)]
    result = run(studies, readers, reading={1: 25, 2: 15}, default_minutes=20)
    assert result["elsewhere"] == {"count": 0, "share": 0.0, "sample": []}
    assert result["arms"]["live"] == result["arms"]["draft"]
    assert result["arms"]["live"]["claimed"] > 0


def test_an_idle_reader_claims_stat_before_routine() -> None:
    # The reader is busy with study 1 until 09:00; a routine study arrives at 08:10,
    # a STAT one at 08:20: free again, the reader takes the STAT first.
    studies = [study(1, 0), study(2, 10, priority=3), study(3, 20, priority=1)]
    result = run(studies, [Reader(1)], reading={1: 60})
    by_priority = result["arms"]["live"]["by_priority"]
    assert by_priority["1"]["time_to_claim"]["max"] == 40 * 60  # 09:00 - 08:20
    assert by_priority["3"]["time_to_claim"]["max"] == 110 * 60  # 10:00 - 08:10
    assert by_priority["3"]["time_to_offer"]["max"] == 0


def test_a_routine_study_that_waited_longer_than_its_aging_outranks_a_new_stat() -> None:
    # Study 2 (routine) waited from 08:01; the STAT arrives at 10:30: by 11:00 the
    # routine's rank (08:01 + 2 h) is earlier than the STAT's (10:30).
    studies = [study(1, 0), study(2, 1, priority=3), study(3, 150, priority=1)]
    result = run(studies, [Reader(1)], reading={1: 180}, end=at(600))
    by_priority = result["arms"]["live"]["by_priority"]
    assert by_priority["3"]["time_to_claim"]["max"] == (180 - 1) * 60
    assert by_priority["1"]["time_to_claim"]["max"] == (360 - 150) * 60


def test_escalation_happens_at_the_sla_fraction_in_simulated_time() -> None:
    # The local reader is reading study 1 for ten hours; study 2 (4 h target) is
    # offered to them only, then at 25 % of its target (1 h) to the regional reader.
    studies = [study(1, 0, priority=2), study(2, 0.5, priority=3)]
    readers = [Reader(1, tier=0), Reader(2, tier=1)]
    result = run(studies, readers, reading={1: 600, 2: 10})
    live = result["arms"]["live"]
    assert live["first_offer_by_tier"] == {"0": 2, "1": 0, "2": 0}
    assert live["escalations"] == 1
    assert live["final_tier"] == {"0": 1, "1": 1, "2": 0}
    assert live["by_priority"]["3"]["time_to_claim"]["max"] == 60 * 60


def test_escalation_fractions_of_the_draft_change_when_the_regional_reader_claims() -> None:
    studies = [study(1, 0, priority=2), study(2, 0.5, priority=3)]
    readers = [Reader(1, tier=0), Reader(2, tier=1)]
    result = run(
        studies,
        readers,
        reading={1: 600, 2: 10},
        live=rule(),
        draft=rule("later", fractions=(0.5, 0.75)),
    )
    assert result["arms"]["live"]["by_priority"]["3"]["time_to_claim"]["max"] == 3600
    assert result["arms"]["draft"]["by_priority"]["3"]["time_to_claim"]["max"] == 7200
    # The first decisions are the same (only the rule's name differs).
    assert result["elsewhere"]["count"] == 2


def test_an_auto_assignment_not_accepted_in_time_moves_to_the_next_reader() -> None:
    # Reader 1 (local) claims study 1 and reads it for ten hours; study 2 is
    # auto-assigned to them too, times out after 5 minutes and goes to reader 2.
    studies = [study(1, 0, priority=2), study(2, 1, priority=3)]
    readers = [Reader(1, tier=0), Reader(2, tier=1)]
    result = run(studies, readers, live=rule(auto_assign=True), reading={1: 600, 2: 10})
    live = result["arms"]["live"]
    assert live["by_priority"]["3"]["time_to_claim"]["max"] == 5 * 60
    assert live["final_tier"] == {"0": 1, "1": 1, "2": 0}
    assert [(r["radiologist_id"], r["claimed"]) for r in live["readers"]] == [(1, 1), (2, 1)]


def test_an_auto_assignment_offers_one_reader_at_a_time() -> None:
    result = run(
        [study(1, 0, recorded=RecordedDecision("everything", 0, "offered", frozenset({1})))],
        [Reader(1), Reader(2)],
        live=rule(auto_assign=True),
    )
    assert result["recorded"]["same"] == 1


def test_a_license_ending_mid_window_makes_its_reader_ineligible_from_that_instant() -> None:
    ends = at(240)  # 12:00
    studies = [study(1, 180), study(2, 239), study(3, 240), study(4, 300)]
    result = run(studies, [Reader(1, license_ends=ends)], end=at(600))
    live = result["arms"]["live"]
    assert live["claimed"] == 2
    assert live["first_offer_by_tier"]["0"] == 2
    assert live["unroutable"]["count"] == 2
    assert live["unroutable"]["reasons"] == [[f"no radiologist licensed in {TX} is on shift", 2]]


def test_an_unroutable_study_is_offered_when_a_reader_comes_on_shift() -> None:
    # Nobody on shift at 09:00; a reader starts at 10:07 (not on a retry mark).
    studies = [study(1, 60)]
    result = run(studies, [Reader(1, shifts=[(at(127), at(600))])])
    live = result["arms"]["live"]
    assert live["unroutable"]["count"] == 1 and live["unroutable"]["never_offered"] == 0
    assert live["by_priority"]["3"]["time_to_offer"]["max"] == 67 * 60
    assert live["claimed"] == 1


def test_reading_time_drives_claims() -> None:
    # Twenty studies at 08:00; in the two hours to 10:00 the 30-minute reader claims
    # four (08:00, 08:30, 09:00, 09:30), the 60-minute reader two (08:00, 09:00).
    studies = [study(i, 0) for i in range(1, 21)]
    result = run(studies, [Reader(1), Reader(2)], reading={1: 30, 2: 60}, end=at(119))
    readers = {r["radiologist_id"]: r for r in result["arms"]["live"]["readers"]}
    assert readers[1]["claimed"] == 4 and readers[2]["claimed"] == 2
    assert readers[1]["work"] == 4.0
    assert readers[1]["busy_hours"] == round(119 / 60, 2)  # the last read clipped
    fairness = result["arms"]["live"]["fairness"]
    assert fairness == {
        "readers": 2,
        "mean_work": 3.0,
        "max_work": 4.0,
        "coefficient_of_variation": 0.333,
        "max_over_mean": 1.333,
    }
    assert result["reading_model"] == {"default_minutes": 10.0, "readers": {"1": 30.0, "2": 60.0}}


def test_sla_met_when_the_read_ends_by_the_due_time_and_missed_otherwise() -> None:
    # One reader, 60-minute reads, targets of 2 h: the first two finish in time
    # (09:00, 10:00), the third at 11:00 is late; the fourth is never claimed by the
    # end of the window (10:30) but is not due yet, so not counted.
    studies = [study(i, 0, target=2 * HOUR) for i in range(1, 4)] + [study(4, 60, target=4 * HOUR)]
    result = run(studies, [Reader(1)], reading={1: 60}, end=at(150))
    routine = result["arms"]["live"]["by_priority"]["3"]
    assert (routine["sla_met"], routine["sla_missed"]) == (2, 1)
    assert routine["sla_missed_share"] == round(1 / 3, 4)
    assert result["arms"]["live"]["unclaimed_at_end"] == 1


def test_a_study_blocked_by_a_reader_at_their_cap_is_retried_when_their_read_ends() -> None:
    # The only reader (cap 1) claims study 1 at 08:00 and reads it until 11:32;
    # study 2 arrives at 08:01 with that reader at their cap: unroutable, retried the
    # moment the read ends, not at the next 15-minute mark (11:45).
    readers = [Reader(1, workload_cap=1)]
    studies = [study(1, 0, priority=2), study(2, 1)]
    result = run(studies, readers, reading={1: 212})
    live = result["arms"]["live"]
    assert live["unroutable"]["reasons"] == [
        ["no eligible radiologist on shift (1 considered: 1 at the workload cap)", 1]
    ]
    # Retried when the reader's read ends (not at the next 15-minute mark).
    assert live["by_priority"]["3"]["time_to_offer"]["max"] == 211 * 60
    assert live["by_priority"]["3"]["time_to_claim"]["max"] == 211 * 60


def test_a_kept_offer_nobody_else_can_take_turns_unroutable_once_the_sla_is_at_risk() -> None:
    # Studies 1 and 2 (4 h targets) are both offered to the only reader (cap 1) at
    # 08:00; they claim study 1 (urgent) for a 5-hour read and keep the offer of
    # study 2, which nobody else can take: re-armed at the widest tier until 3 h in
    # (at risk), then unroutable with its holder's reason; the holder claims it when
    # free at 13:00.
    readers = [Reader(1, workload_cap=1)]
    studies = [study(1, 0, priority=2), study(2, 0, priority=3)]
    result = run(studies, readers, reading={1: 300})
    live = result["arms"]["live"]
    assert live["unroutable"]["count"] == 1
    assert live["unroutable"]["never_offered"] == 0
    assert live["unroutable"]["reasons"] == [
        [
            "SLA at risk and its offered readers cannot take it: no eligible radiologist "
            "on shift (1 considered: 1 at the workload cap)",
            1,
        ]
    ]
    routine = live["by_priority"]["3"]
    assert routine["time_to_claim"]["max"] == 300 * 60
    assert routine["at_risk"] == 1 and routine["sla_missed"] == 1
    assert live["escalations"] == 0


def test_the_recorded_decisions_are_compared_with_the_live_arm() -> None:
    same_offer = RecordedDecision("everything", 0, "offered", frozenset({1, 2}))
    other_readers = RecordedDecision("everything", 0, "offered", frozenset({1}))
    escalated = RecordedDecision("everything", 0, "escalated", frozenset({1, 2}))
    studies = [
        study(1, 0, recorded=same_offer),
        study(2, 1, recorded=other_readers),
        study(3, 2, recorded=escalated),
        study(4, 3),
    ]
    result = run(studies, [Reader(1), Reader(2)], reading={1: 1, 2: 1})
    recorded = result["recorded"]
    assert (recorded["compared"], recorded["same"]) == (3, 2)
    (difference,) = recorded["differences"]
    assert difference["study_id"] == 2
    assert difference["recorded"] == {"tier": 0, "outcome": "offered", "offered_to": [1]}
    assert {r["radiologist_id"] for r in difference["replayed"]["offered_to"]} == {1, 2}


def test_a_recorded_unroutable_decision_agrees_with_a_replayed_one() -> None:
    nobody = RecordedDecision("local only", 0, "unroutable", frozenset())
    offered = RecordedDecision("local only", 0, "offered", frozenset({1}))
    result = run(
        [study(1, 0, recorded=nobody), study(2, 1, recorded=offered)],
        [Reader(1, tier=2)],
        live=rule("local only", widest_tier=0),
    )
    assert (result["recorded"]["compared"], result["recorded"]["same"]) == (2, 1)


def test_a_stream_of_studies_is_read_one_at_a_time_and_forgotten_once_claimed() -> None:
    readers = [Reader(r, tier=r % 3) for r in range(1, 7)]
    replayer = engine._Replay(
        live=[rule()],
        draft=[rule("draft", widest_tier=1)],
        roster=FakeRoster(readers),
        reading_minutes={},
        default_reading_minutes=1.0,
        window=(T0, T0 + 30 * 24 * HOUR),
        sample_size=5,
        aging_step=HOUR,
        unroutable_retry=15 * MINUTE,
    )
    most_open = 0

    def stream() -> Iterator[SimStudy]:
        nonlocal most_open
        for i in range(20_000):
            most_open = max(most_open, *(len(arm.open) for arm in replayer.arms))
            yield study(i + 1, 2 * i, priority=1 + i % 3)

    seen: list[int] = []
    result = replayer.run(stream(), seen.append)
    assert result["studies"] == 20_000
    assert seen == [*range(500, 20_001, 500), 20_000]
    for name in ("live", "draft"):
        assert result["arms"][name]["claimed"] == 20_000
        assert result["arms"][name]["unclaimed_at_end"] == 0
    assert [len(arm.open) for arm in replayer.arms] == [0, 0]
    assert most_open <= 6  # never more than the few being decided
    assert len(replayer.events) < 50
    assert all(len(r.worklist) < 50 for arm in replayer.arms for r in arm.readers.values())
    assert len(result["elsewhere"]["sample"]) == 5


def test_decisions_at_one_instant_share_the_roster_answers() -> None:
    # Ten studies at the same instant, the same facility, rule and priority: the
    # readers' facts are asked once per arm load, not once per study.
    roster = FakeRoster([Reader(1, shifts=[(at(60), at(600))]), Reader(2, tier=2)])
    replay(
        [study(i, 0) for i in range(1, 11)],
        live=[rule("local", widest_tier=0)],
        draft=[rule("local", widest_tier=0)],
        roster=roster,
        reading_minutes={},
        default_reading_minutes=600,
        window=(T0, at(10)),
    )
    assert roster.facts_asked == 1


def test_identical_rules_with_a_different_name_count_as_elsewhere_only_by_name() -> None:
    base = rule("a")
    result = run([study(1, 0)], [Reader(1)], live=base, draft=replace(base, name="b"))
    assert result["elsewhere"]["count"] == 1
    entry = result["elsewhere"]["sample"][0]
    assert entry["live"]["offered_to"] == entry["draft"]["offered_to"]
    assert (entry["live"]["rule"], entry["draft"]["rule"]) == ("a", "b")


def test_a_study_nobody_can_take_for_a_day_is_left_to_an_admin_not_retried_forever() -> None:
    # Nobody on shift for two days, then a reader: a study that waited a day past
    # arrival (its 4 h target long gone) is given up (an admin assigns such a study
    # by hand); one that arrived within a day of the reader's shift is offered.
    reader = Reader(1, shifts=[(at(48 * 60), at(72 * 60))])
    studies = [study(1, 60), study(2, 30 * 60)]
    roster = FakeRoster([reader])
    result = replay(
        studies,
        live=[rule()],
        draft=[rule()],
        roster=roster,
        reading_minutes={},
        default_reading_minutes=10.0,
        window=(T0, T0 + 72 * HOUR),
        readers=[1],
    )
    live = result["arms"]["live"]
    assert live["given_up"] == 1 and live["claimed"] == 1
    assert live["unroutable"]["never_offered"] == 1
    assert live["by_priority"]["3"]["sla_missed"] == 2
