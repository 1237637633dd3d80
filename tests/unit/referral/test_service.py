"""The referral service over dict stores, with the internal topics replaced by in-memory queues:
a simulated population's referrals come out as the truth says, whatever the order in which the
steps arrive."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from schemas.referral import LeadChanged, LeadType, ReferralReason
from services.referral.domain import (
    Candidate,
    CodeGrant,
    CustomerReferralState,
    Decision,
    Link,
    Movement,
    ReferralRules,
    decide,
    on_account_event,
    on_decision,
)
from services.referral.service import Ports, ReferralOutput, ReferralService
from services.referral.steps import LinkRecord, Step, StepMark, Watermark
from services.runtime.codec import Rejection, decode_account_event
from services.runtime.produce import records_from_lines
from services.runtime.pseudonym import counterparty_key, name_key
from services.simulator.identity import holder_name
from services.simulator.simulate import Simulation, simulate
from services.simulator.truth import Truth


class Router:
    """The service with its effects captured: outputs kept, links and steps queued."""

    def __init__(self, truth: Truth, shuffle: int | None = None) -> None:
        self.outputs: list[ReferralOutput] = []
        self.links: list[LinkRecord] = []
        self.steps: list[Step] = []
        self.rng = random.Random(shuffle) if shuffle is not None else None
        issued = truth.start - timedelta(days=1)
        self.codes = {
            code: CodeGrant(owner=owner, issued_at=issued) for code, owner in truth.codes.items()
        }
        self.service = ReferralService(
            {},
            {},
            Ports(self._publish, self._links, self._watermark, self._steps, self._mark, self._code),
            ReferralRules(),
            b"k",
            sources=1,
            lateness=timedelta(hours=24),
        )

    async def _publish(self, outputs: list[ReferralOutput]) -> None:
        self.outputs += outputs

    async def _links(self, links: list[Link]) -> None:
        self.links += [LinkRecord(link=item) for item in links]

    async def _watermark(self, mark: Watermark) -> None:
        self.links.append(LinkRecord(watermark=mark))

    async def _steps(self, steps: list[Step]) -> None:
        self.steps += steps

    async def _mark(self, mark: StepMark) -> None:
        self.steps.append(Step(mark=mark))

    async def _code(self, code: str) -> CodeGrant | None:
        return self.codes.get(code)

    async def pump(self) -> None:
        """Deliver queued links and steps (in a shuffled order when asked) until none is left."""
        while self.links or self.steps:
            if self.rng is not None and self.links and self.steps and self.rng.random() < 0.5:
                await self.service.handle_step(self.steps.pop(0), 0)
            elif self.links:
                await self.service.handle_link_record(self.links.pop(0), 0)
            else:
                await self.service.handle_step(self.steps.pop(0), 0)

    def run(
        self, simulation: Simulation, rebalanced: bool = False, backlog: bool = False
    ) -> Router:
        """Every event through the service; `rebalanced`: as if the partition had moved
        before each (its marks are sent again even when their day did not advance);
        `backlog`: the whole input first, then the steps (a replay whose input runs a year
        ahead of the steps)."""

        async def go() -> None:
            for record in records_from_lines(simulation.lines):
                event = decode_account_event(record.key, record.value)
                if isinstance(event, Rejection):
                    continue
                if rebalanced:
                    self.service.counted.clear()
                await self.service.handle_account_event(event, 0)
                await self.service.advance_source(0)
                if not backlog:
                    await self.pump()
            await self.pump()

        asyncio.run(go())
        return self


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    return simulate(400, 365, seed=21)


def referrals(outputs: list[ReferralOutput]) -> dict[str, list[tuple[str, str | None]]]:
    found: dict[str, list[tuple[str, str | None]]] = {}
    seen = set()
    for o in outputs:
        if o.event_id in seen or o.type.startswith("lead."):
            continue
        seen.add(o.event_id)
        found.setdefault(o.referee, []).append((o.type, o.referrer))  # type: ignore[union-attr]
    return found


def test_conversions_are_attributed_to_the_true_introducer(simulation: Simulation) -> None:
    router = Router(simulation.truth).run(simulation)
    found = referrals(router.outputs)
    truth = simulation.truth
    right = [
        c
        for c in truth.conversions
        if ("referral.attributed", c.introduced_by) in found.get(c.customer_id, [])
    ]
    by_via = Counter(c.via for c in right)
    assert len(right) == len(truth.conversions), [
        (c.customer_id, c.via, c.introduced_by, found.get(c.customer_id))
        for c in truth.conversions
        if c not in right
    ]
    assert by_via["code"] > 0 and by_via["chain"] > 0
    leads = [o for o in router.outputs if o.type == "lead.detected"]
    assert leads, "landlords and employers paid by customers become leads"


def test_the_customers_own_accounts_elsewhere_are_never_leads(simulation: Simulation) -> None:
    """Customers moving money to their own account at another bank name it as that bank
    writes their name ("WEI, Li" for Li Wei), most without the feed's own-account flag."""
    own: set[str] = set()
    for record in records_from_lines(simulation.lines):
        event = decode_account_event(record.key, record.value)
        cp = getattr(event, "counterparty", None)
        if (
            cp is not None
            and cp.name
            and name_key(cp.name, b"k") == name_key(holder_name(event.customer_id), b"k")
        ):
            own.add(counterparty_key(cp.bank_code, cp.account, b"k"))
    assert len(own) >= 5
    leads = Router(simulation.truth).run(simulation).outputs
    assert not own & {o.counterparty_key for o in leads if o.type == "lead.detected"}


def test_fraud_is_caught(simulation: Simulation) -> None:
    found = referrals(Router(simulation.truth).run(simulation).outputs)
    for case in simulation.truth.fraud:
        if case.pattern == "self_referral":
            # attributed at opening, rejected once the shared phone arrives with the profile
            assert found[case.referees[0]][-1][0] == "referral.rejected"
            assert "referral.qualified" not in [kind for kind, _ in found[case.referees[0]]]
        elif case.pattern == "ring":
            # The ring's referrer coming back with the last referee's code is rejected; every
            # other leg, let through before the ring closed, is held or reversed.
            assert found[case.referrer][-1][0] == "referral.rejected"
            others = [r for r in case.referees if r != case.referrer]
            assert others and all(
                found[r][-1][0] in ("referral.held", "referral.reversed") for r in others
            )
        elif case.pattern == "velocity":
            # The ones past the limit are held at once, and the whole burst with them. A
            # genuine referral by the same referrer during the burst counts towards the limit.
            opened = [simulation.truth.customers[r].opened_at for r in case.referees]
            during = [
                g
                for g in simulation.truth.genuine_referrals
                if g.referrer == case.referrer and min(opened) <= g.opened_at <= max(opened)
            ]
            held = [r for r in case.referees if found[r][0][0] == "referral.held"]
            rules = ReferralRules()
            assert len(held) == len(case.referees) + len(during) - rules.velocity_limit
            assert all(
                found[r][-1][0] in ("referral.held", "referral.reversed") for r in case.referees
            )


@pytest.mark.parametrize("backlog", [False, True], ids=["live", "input a year ahead"])
def test_a_referee_funded_by_the_referrer_is_held_directly_or_through_one_hop(
    simulation: Simulation, backlog: bool
) -> None:
    """Through one hop, the referrer usually pays the go-between after the referral; read at
    the qualifying moment, also when the referrer's input has run on to the year's end."""
    found = referrals(Router(simulation.truth).run(simulation, backlog=backlog).outputs)
    funded = [c for c in simulation.truth.fraud if c.pattern.startswith("funded")]
    assert {c.pattern for c in funded} == {"funded_by_referrer", "funded_through_hop"}
    for case in funded:
        (referee,) = case.referees
        assert ("referral.held", case.referrer) in found[referee], (case.pattern, found[referee])
        assert "referral.qualified" not in [kind for kind, _ in found[referee]]


def test_the_order_of_internal_steps_does_not_change_the_outcome(simulation: Simulation) -> None:
    straight = {o.event_id for o in Router(simulation.truth).run(simulation).outputs}
    shuffled = {o.event_id for o in Router(simulation.truth, shuffle=3).run(simulation).outputs}
    assert straight == shuffled


def test_marks_sent_again_without_a_new_day_change_no_output(simulation: Simulation) -> None:
    straight = [o.event_id for o in Router(simulation.truth).run(simulation).outputs]
    again = [o.event_id for o in Router(simulation.truth).run(simulation, rebalanced=True).outputs]
    assert straight == again


def counterparty_step(
    sources: int,
) -> tuple[ReferralService, list[ReferralOutput], list[Step]]:
    """A service fed links by hand, with what it publishes and the steps it sends."""
    outputs: list[ReferralOutput] = []
    steps: list[Step] = []

    async def publish(o: list[ReferralOutput]) -> None:
        outputs.extend(o)

    async def send_steps(s: list[Step]) -> None:
        steps.extend(s)

    async def nothing(*_: object) -> None:
        return None

    async def no_code(_: str) -> None:
        return None

    service = ReferralService(
        {},
        {},
        Ports(publish, nothing, nothing, send_steps, nothing, no_code),
        ReferralRules(),
        b"k",
        sources=sources,
        lateness=timedelta(0),
    )
    return service, outputs, steps


def test_links_apply_in_event_time_order_whatever_the_interleaving_of_sources() -> None:
    """Two input partitions' links reach a counterparty in different interleavings; the
    watermarks make the lead's referrer and the chain match come out the same."""
    t0 = datetime(2025, 3, 1, tzinfo=UTC)

    def a_link(n: int, customer: str, day: float, funding: bool = False) -> Link:
        return Link(
            event_id=f"e{n}",
            occurred_at=t0 + timedelta(days=day),
            customer_id=customer,
            counterparty_key="cp",
            business=False,
            direction="out",
            amount=Decimal(100),
            funding=funding,
        )

    source0 = [a_link(1, "A", 1), a_link(2, "A", 2), a_link(3, "A", 3)]
    source1 = [a_link(4, "B", 1.5), a_link(5, "B", 2.5), a_link(6, "NEW", 3.5, funding=True)]

    def run(order: list[tuple[int, Link]]) -> list[tuple[str, str]]:
        service, outputs, steps = counterparty_step(sources=2)

        async def go() -> None:
            for _, item in order:
                await service.handle_link_record(LinkRecord(link=item), 0)
            for source in (0, 1):
                day = (t0 + timedelta(days=10)).toordinal()
                await service.handle_link_record(
                    LinkRecord(watermark=Watermark(source=source, day=day)), 0
                )

        asyncio.run(go())
        return [(o.type, o.suggested_referrer) for o in outputs if isinstance(o, LeadChanged)] + [
            ("match", s.chain_match.referrer) for s in steps if s.chain_match is not None
        ]

    all_of_0_first = [(0, x) for x in source0] + [(1, x) for x in source1]
    all_of_1_first = [(1, x) for x in source1] + [(0, x) for x in source0]
    assert run(all_of_0_first) == run(all_of_1_first)
    assert run(all_of_0_first)[-1] == ("match", "A")


def test_a_lead_lapses_with_the_passing_of_event_time_as_it_does_at_its_next_tie() -> None:
    """`lead.expired` comes once every input partition has passed the lead's expiry, dated at
    the expiry, and is the same event the next transaction would have found."""
    t0 = datetime(2025, 3, 1, 10, tzinfo=UTC)

    def at(days: float) -> datetime:
        return t0 + timedelta(days=days)

    def a_link(n: int, day: float) -> LinkRecord:
        return LinkRecord(
            link=Link(
                event_id=f"e{n}",
                occurred_at=at(day),
                customer_id="A",
                counterparty_key="cp",
                business=False,
                direction="out",
                amount=Decimal(100),
            )
        )

    def run(records: list[LinkRecord]) -> list[LeadChanged]:
        service, outputs, _ = counterparty_step(sources=1)

        async def go() -> None:
            for record in records:
                await service.handle_link_record(record, 0)

        asyncio.run(go())
        return [o for o in outputs if isinstance(o, LeadChanged)]

    def mark(day: float) -> LinkRecord:
        return LinkRecord(watermark=Watermark(source=0, day=at(day).toordinal()))

    ties = [a_link(1, 1), a_link(2, 2), a_link(3, 3)]
    # The lead's last tie is on day 3: it lapses at day 183, 10:00.
    on_its_day = run([*ties, mark(10), mark(183)])
    assert [o.type for o in on_its_day] == ["lead.detected"]
    by_time = run([*ties, mark(10), mark(184), mark(200)])
    assert [o.type for o in by_time] == ["lead.detected", "lead.expired"]
    assert by_time[-1].occurred_at == by_time[-1].expires_at == at(183)
    by_next_tie = run([*ties, mark(10), a_link(4, 250), mark(251)])
    assert [o.type for o in by_next_tie] == ["lead.detected", "lead.expired"]
    assert by_next_tie[-1] == by_time[-1]
    # A tie before the expiry keeps the lead alive: filed again under its new day.
    saved = run([*ties, mark(10), a_link(4, 100), mark(101), mark(184), mark(281)])
    assert [o.type for o in saved] == ["lead.detected", "lead.expired"]
    assert saved[-1].occurred_at == at(280)


def test_a_referrer_decides_its_candidates_in_event_time_order_whatever_their_arrival() -> None:
    """Twelve referrals by one referrer reach it from two partitions in any order: they wait
    for every source's mark and are then decided by event time, so the two that exceed the
    velocity limit are always the last two made (and the ten before them are held after the
    fact, whatever the order)."""
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    candidates = [
        Candidate(
            referral_id=f"r{n:02}",
            referrer="R",
            referee=f"E{n:02}",
            via="code",
            lead_type=LeadType.RETAIL,
            occurred_at=t0 + timedelta(hours=n),
        )
        for n in range(12)
    ]
    day = (t0 + timedelta(days=2)).toordinal()

    def held(order: list[Candidate]) -> list[str]:
        service, _, steps = counterparty_step(sources=2)

        async def go() -> None:
            for n, candidate in enumerate(order):
                await service.handle_step(Step(candidate=candidate), 0)
                if n == 5:  # a mark that lets nothing through yet: one source is missing
                    await service.handle_step(Step(mark=StepMark(source="input:0", day=day)), 0)
            assert not [s for s in steps if s.decision is not None]
            for source in ("input:1", "steps:0", "steps:1"):
                await service.handle_step(Step(mark=StepMark(source=source, day=day)), 0)

        asyncio.run(go())
        decisions = [s.decision for s in steps if s.decision is not None]
        answers = [d for d in decisions if not d.after_the_fact]
        assert len(answers) == 12
        # The burst shows at the eleventh: the ten before it are held after the fact.
        assert sorted(d.candidate.referee for d in decisions if d.after_the_fact) == [
            f"E{n:02}" for n in range(10)
        ]
        return sorted(d.candidate.referee for d in answers if d.outcome == "held")

    shuffled = list(candidates)
    random.Random(5).shuffle(shuffled)
    assert held(candidates) == held(shuffled) == held(candidates[::-1]) == ["E10", "E11"]


def test_qualification_is_the_same_whether_the_decision_comes_before_the_money_or_after() -> None:
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    rules = ReferralRules()
    opened = Movement(
        event_id="o",
        event_type="account.opened",
        occurred_at=t0,
        account_id="N1",
        referral_code="CODE1234",
    )
    deposits = [
        Movement(
            event_id=f"d{n}",
            event_type="deposit",
            occurred_at=t0 + timedelta(days=n + 1),
            account_id="N1",
            amount=Decimal(amount),
        )
        for n, amount in enumerate(("600", "500", "900"))
    ]
    code = CodeGrant(owner="R", issued_at=t0 - timedelta(days=1))

    def qualified(decision_after: int) -> list[tuple[str, datetime, Decimal | None]]:
        outcome = on_account_event(None, "N", opened, code, rules)
        state, events = outcome.state, list(outcome.events)
        _, (decision,) = decide(None, outcome.candidates[0], rules)
        for n, movement in enumerate(deposits):
            if n == decision_after:
                step = on_decision(state, decision, rules)
                state, events = step.state, events + step.events
            step = on_account_event(state, "N", movement, None, rules)
            state, events = step.state, events + step.events
        if decision_after == len(deposits):
            step = on_decision(state, decision, rules)
            events += step.events
        return [(e.type, e.occurred_at, e.qualifying_amount) for e in events]

    expected = [
        ("referral.attributed", t0, None),
        ("referral.qualified", t0 + timedelta(days=2), Decimal(1100)),
    ]
    assert [qualified(n) for n in range(4)] == [expected] * 4


# -- idle input partitions (docs/referral.md, "Idle input partitions") --------------------------

T0 = datetime(2025, 3, 1, 10, tzinfo=UTC)


def on_day(day: float) -> datetime:
    return T0 + timedelta(days=day)


def ordinal(day: float) -> int:
    return on_day(day).toordinal()


def a_tie(n: int, customer: str, day: float, funding: bool = False) -> LinkRecord:
    return LinkRecord(
        link=Link(
            event_id=f"e{n}",
            occurred_at=on_day(day),
            customer_id=customer,
            counterparty_key="cp",
            business=False,
            direction="out",
            amount=Decimal(100),
            funding=funding,
        )
    )


def watermark(source: int, day: int, through: int | None = None) -> LinkRecord:
    idle = through is not None
    return LinkRecord(watermark=Watermark(source=source, day=day, idle=idle, through=through or 0))


def run_links(service: ReferralService, records: list[LinkRecord]) -> None:
    async def go() -> None:
        for record in records:
            await service.handle_link_record(record, 0)

    asyncio.run(go())


def lead_types(outputs: list[ReferralOutput]) -> list[str]:
    return [o.type for o in outputs if isinstance(o, LeadChanged)]


THREE_TIES = [a_tie(1, "A", 1), a_tie(2, "A", 2), a_tie(3, "A", 3)]


def test_an_idle_source_does_not_hold_back_the_links_of_the_others() -> None:
    """Source 2 never had a record: while it says nothing, the lead waits for it; once it is
    idle, the others' watermarks alone release the links."""
    service, outputs, _ = counterparty_step(sources=3)
    run_links(service, [*THREE_TIES, watermark(0, ordinal(10)), watermark(1, ordinal(10))])
    assert lead_types(outputs) == []
    run_links(service, [watermark(2, 0, through=0)])
    assert lead_types(outputs) == ["lead.detected"]


def test_when_every_source_is_idle_the_last_day_is_released() -> None:
    """The last day's links (and the funding that makes a chain match) wait for the next day
    of input while the sources are busy; idle, every link they have was sent, and all of it
    is released, expiries before that day included."""
    service, outputs, steps = counterparty_step(sources=2)
    records = [*THREE_TIES, a_tie(4, "NEW", 3.5, funding=True)]
    # Busy: each source's watermark is its newest event time less the allowed lateness.
    run_links(service, [*records, watermark(0, ordinal(2.5)), watermark(1, ordinal(2.5))])
    assert lead_types(outputs) == []  # only the tie of day 1 is released
    assert [s for s in steps if s.chain_match is not None] == []
    run_links(service, [watermark(0, ordinal(2.5), through=ordinal(3.5) + 1)])
    assert [s for s in steps if s.chain_match is not None] == []  # source 1 still busy
    run_links(service, [watermark(1, ordinal(2.5), through=ordinal(1) + 1)])
    assert lead_types(outputs) == ["lead.detected"]
    (match,) = [s.chain_match for s in steps if s.chain_match is not None]
    assert match is not None and (match.referee, match.referrer) == ("NEW", "A")


def test_a_source_that_comes_back_counts_again_and_releases_never_go_back() -> None:
    service, outputs, _ = counterparty_step(sources=2)
    run_links(service, [watermark(0, ordinal(5)), watermark(1, 0, through=0)])
    # Source 1 comes back (its records arrive) with a mark that is not idle: it holds the
    # release back again, and what was released stays released.
    run_links(service, [watermark(1, ordinal(3)), *THREE_TIES[:2], a_tie(3, "A", 6)])
    run_links(service, [watermark(0, ordinal(9))])
    assert lead_types(outputs) == []  # the tie of day 6 waits for source 1
    run_links(service, [watermark(1, ordinal(8))])
    assert lead_types(outputs) == ["lead.detected"]
    marks = orjson.loads(service.counterparties["#marks:0"])
    assert marks["released"] == ordinal(8)
    assert "idle" not in marks


def test_a_late_link_reaching_idle_sources_is_applied_at_once() -> None:
    """Every source idle and the last day released: a link dated before it (a source that
    came back with an old event) has no release left to wait for and is applied as it comes."""
    service, outputs, _ = counterparty_step(sources=2)
    run_links(
        service,
        [
            *THREE_TIES[:2],
            watermark(0, ordinal(2), through=ordinal(9)),
            watermark(1, ordinal(2), through=ordinal(9)),
        ],
    )
    assert lead_types(outputs) == []
    run_links(service, [a_tie(3, "A", 4)])
    assert lead_types(outputs) == ["lead.detected"]


def test_busy_sources_release_as_before_and_store_no_idle_state() -> None:
    """Without idle marks, releases follow the lowest watermark as they always did, and a
    mark repeated with the same day (sent again after a rebalance) changes nothing."""
    service, outputs, steps = counterparty_step(sources=2)
    records = [*THREE_TIES, a_tie(4, "NEW", 4.5, funding=True)]
    run_links(service, [*records, watermark(0, ordinal(10)), watermark(1, ordinal(4))])
    run_links(service, [watermark(1, ordinal(4)), watermark(0, ordinal(10))])
    assert lead_types(outputs) == ["lead.detected"]
    assert [s for s in steps if s.chain_match is not None] == []  # day 4.5 waits for source 1
    marks = orjson.loads(service.counterparties["#marks:0"])
    assert marks == {"sources": {"0": ordinal(10), "1": ordinal(4)}, "released": ordinal(4)}


def test_a_partition_told_idle_sends_its_next_mark_even_when_its_day_did_not_advance() -> None:
    """The sender: an idle mark says the day before which everything was sent (the day after
    its newest event time); the next batch's mark is an ordinary one, so receivers count the
    partition again; a record that came meanwhile cancels the idle mark."""
    watermarks: list[Watermark] = []
    marks: list[StepMark] = []

    async def to_links(mark: Watermark) -> None:
        watermarks.append(mark)

    async def to_steps(mark: StepMark) -> None:
        marks.append(mark)

    async def nothing(*_: object) -> None:
        return None

    async def no_code(_: str) -> None:
        return None

    service = ReferralService(
        {},
        {},
        Ports(nothing, nothing, to_links, nothing, to_steps, no_code),
        ReferralRules(),
        b"k",
        sources=2,
        lateness=timedelta(hours=24),
    )
    opened = decode_account_event(
        b"C1",
        orjson.dumps(
            {
                "event_type": "account.opened",
                "event_id": "C1-1",
                "occurred_at": on_day(3).isoformat(),
                "customer_id": "C1",
                "account_id": "A1",
            }
        ),
    )
    assert not isinstance(opened, Rejection)

    async def go() -> None:
        await service.handle_account_event(opened, 1)
        await service.advance_source(1)
        assert not await service.announce_idle(1, lambda: False)
        assert await service.announce_idle(1, lambda: True)
        await service.handle_account_event(opened, 1)  # a duplicate: the same day
        await service.advance_source(1)
        await service.handle_account_event(opened, 1)
        await service.advance_source(1)  # counted again: nothing to send

    asyncio.run(go())
    day = ordinal(2)
    assert watermarks == [
        Watermark(source=1, day=day),
        Watermark(source=1, day=day, idle=True, through=ordinal(3) + 1),
        Watermark(source=1, day=day),
    ]
    assert [(m.source, m.day, m.idle, m.through) for m in marks] == [
        ("input:1", day, False, 0),
        ("input:1", day, True, ordinal(3) + 1),
        ("input:1", day, False, 0),
    ]
    assert service.customers["#source:1"] == b"%d %d" % (day, ordinal(3) + 1)


def test_idle_inputs_let_a_referrer_decide_and_a_late_candidate_is_decided_at_once() -> None:
    candidates = [
        Candidate(
            referral_id=f"r{n}",
            referrer="R",
            referee=f"E{n}",
            via="code",
            lead_type=LeadType.RETAIL,
            occurred_at=on_day(n),
        )
        for n in range(3)
    ]
    service, _, steps = counterparty_step(sources=2)

    def mark(source: str, day: int, through: int | None = None) -> Step:
        idle = through is not None
        return Step(mark=StepMark(source=source, day=day, idle=idle, through=through or 0))

    def decided() -> list[str]:
        return [s.decision.candidate.referral_id for s in steps if s.decision is not None]

    async def go() -> None:
        for candidate in candidates[:2]:
            await service.handle_step(Step(candidate=candidate), 0)
        for source in ("steps:0", "steps:1"):
            await service.handle_step(mark(source, ordinal(5)), 0)
        # Input 0 is busy at day 0; input 1 is idle: the release waits for input 0 only.
        await service.handle_step(mark("input:0", ordinal(0)), 0)
        await service.handle_step(mark("input:1", 0, through=0), 0)
        assert decided() == []
        await service.handle_step(mark("input:0", ordinal(1)), 0)
        assert decided() == ["r0"]
        # Input 0 idle too: every input has sent everything before day 3.
        await service.handle_step(mark("input:0", ordinal(1), through=ordinal(2) + 1), 0)
        assert decided() == ["r0", "r1"]
        await service.handle_step(Step(candidate=candidates[2]), 0)  # late: dated day 2
        assert decided() == ["r0", "r1", "r2"]

    asyncio.run(go())


def test_a_funding_check_dated_before_the_release_is_answered_at_once() -> None:
    """A check made when a decision reached its referee late is dated before what the
    referrer's steps partition released: it is answered on arrival with the referrer's
    payments up to its moment, not left waiting for a release that comes only once the input
    moves on. A check dated after the release waits for it."""
    service, _, steps = counterparty_step(sources=1)
    service.customers["R"] = (
        CustomerReferralState(
            customer_id="R",
            payments_out=[("cpX", on_day(1), Decimal(1500)), ("cpY", on_day(9), Decimal(700))],
        )
        .model_dump_json()
        .encode()
    )
    check = Candidate(
        referral_id="r0",
        referrer="R",
        referee="E0",
        via="code",
        lead_type=LeadType.RETAIL,
        occurred_at=on_day(3),
        funding_check=True,
    )

    def answers() -> list[Decision]:
        return [s.decision for s in steps if s.decision is not None]

    async def go() -> None:
        for source in ("input:0", "steps:0"):
            await service.handle_step(Step(mark=StepMark(source=source, day=ordinal(10))), 0)
        await service.handle_step(Step(candidate=check), 0)
        (answer,) = answers()
        assert answer.candidate.funding_check
        assert [p[0] for p in answer.referrer_payments] == ["cpX"]
        later = check.model_copy(update={"occurred_at": on_day(12)})
        await service.handle_step(Step(candidate=later), 0)
        assert len(answers()) == 1
        for source in ("input:0", "steps:0"):
            await service.handle_step(Step(mark=StepMark(source=source, day=ordinal(13))), 0)
        assert [p[0] for p in answers()[-1].referrer_payments] == ["cpX", "cpY"]

    asyncio.run(go())


def test_a_ring_of_three_released_at_once_is_caught() -> None:
    """A's code opens B, B's opens C, C's brings A back, all released by one mark (a feed read
    fast). B's referral of C waits for B's own answer, which brings B's upline (A), and C's
    referral of A for C's: so the closing referral sees the ring."""
    t0 = datetime(2025, 3, 1, tzinfo=UTC)

    def referral(referrer: str, referee: str, day: int) -> Candidate:
        return Candidate(
            referral_id=f"{referrer}{referee}",
            referrer=referrer,
            referee=referee,
            via="code",
            lead_type=LeadType.RETAIL,
            occurred_at=t0 + timedelta(days=day),
        )

    legs = [referral("A", "B", 0), referral("B", "C", 3), referral("C", "A", 8)]
    service, _, steps = counterparty_step(sources=1)
    for leg in legs:  # each referee waits for its answer, as its opening left it
        state = CustomerReferralState(customer_id=leg.referee, candidate=leg, status="pending")
        service.customers[leg.referee] = state.model_dump_json().encode()
    day = (t0 + timedelta(days=10)).toordinal()

    async def go() -> None:
        for leg in legs:
            await service.handle_step(Step(candidate=leg), 0)
        for source in ("input:0", "steps:0"):
            await service.handle_step(Step(mark=StepMark(source=source, day=day)), 0)
        delivered = 0
        while delivered < len(steps):
            step = steps[delivered]
            delivered += 1
            if step.decision is not None:
                await service.handle_step(step, 0)

    asyncio.run(go())
    answers = {
        s.decision.candidate.referral_id: (s.decision.outcome, s.decision.reason_code)
        for s in steps
        if s.decision is not None and not s.decision.after_the_fact
    }
    assert answers["AB"] == answers["BC"] == ("attributed", None)
    assert answers["CA"] == ("rejected", ReferralReason.REFERRAL_RING)
