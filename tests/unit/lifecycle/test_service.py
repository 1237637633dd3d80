"""The lifecycle service layer over a plain dict: two years of one customer's history replayed
through the partition clock, and crashes at every kind of moment giving the same outputs."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest

from schemas import parse_account_event
from schemas.account_events import AccountEvent
from schemas.lifecycle import ChurnSignalChanged, SignalKind, Stage, StageChanged, Tier
from services.lifecycle.domain import LifecycleRules, Output
from services.lifecycle.service import Calendar, LifecycleService
from services.simulator.simulate import simulate

T0 = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
EMPLOYER = {"bank_code": "ICBC", "account": "6222000011112222", "kind": "business"}


class Recorder(dict[str, bytes]):
    """A store that logs every write in order, as a changelog would."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, bytes | None]] = []

    def __setitem__(self, key: str, value: bytes) -> None:
        self.log.append((key, value))
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.log.append((key, None))
        super().__delitem__(key)


def restore(log: list[tuple[str, bytes | None]]) -> Recorder:
    """The store a worker recovers from a changelog holding `log`."""
    store = Recorder()
    for key, value in log:
        if value is None:
            store.pop(key, None)
        else:
            dict.__setitem__(store, key, value)
    return store


class Published(list[Output]):
    """Outputs in the order published, and the input offset each was first published at."""

    def __init__(self) -> None:
        super().__init__()
        self.first_at: dict[str, int] = {}

    def by_id(self) -> dict[str, tuple[int, str]]:
        """event_id -> (offset first published at, payload): duplicates collapse."""
        return {o.event_id: (self.first_at[o.event_id], o.model_dump_json()) for o in self}


class Worker:
    """The service over a store, publishing into `published`."""

    def __init__(self, store: Recorder, published: Published) -> None:
        self.store = store
        self.published = published
        self.offset = 0
        # input offset -> length of the store's log when that event began
        self.began: dict[int, int] = {}
        self.service = LifecycleService(
            store, self._publish, LifecycleRules(), timedelta(hours=24), b"test-key"
        )

    async def _publish(self, outputs: list[Output]) -> None:
        self.published.extend(outputs)
        for output in outputs:
            self.published.first_at.setdefault(output.event_id, self.offset)

    def run(self, events: list[AccountEvent], start: int = 0) -> Worker:
        async def go() -> None:
            for self.offset, event in enumerate(events, start):
                self.began[self.offset] = len(self.store.log)
                await self.service.handle(event, partition=0)

        asyncio.run(go())
        return self


def run(events: list[AccountEvent]) -> Published:
    """Outputs of an uninterrupted run."""
    published = Published()
    Worker(Recorder(), published).run(events)
    return published


# -- two years of one customer ---------------------------------------------------------------


class History:
    """Builds a customer's events; balances are filled in event-time order at the end."""

    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        self.events: list[dict[str, Any]] = []

    def add(self, kind: str, day: float, **fields: Any) -> None:
        self.events.append(
            {
                "event_type": kind,
                "occurred_at": (T0 + timedelta(days=day)).isoformat(),
                "customer_id": self.customer_id,
                **fields,
            }
        )

    def money(self, kind: str, day: float, amount: str, **fields: Any) -> None:
        self.add(kind, day, account_id="A1", amount=amount, currency="CNY", **fields)

    def in_order(self) -> list[dict[str, Any]]:
        balance = Decimal(0)
        events = sorted(self.events, key=lambda e: e["occurred_at"])
        for n, event in enumerate(events):
            event["event_id"] = f"{self.customer_id}-{n}"
            if "amount" in event:
                delta = Decimal(event["amount"])
                balance += delta if event["event_type"] in ("deposit", "transfer.in") else -delta
                event["balance_after"] = str(balance)
        return events


def two_years(shift: float = 0, suffix: str = "") -> list[AccountEvent]:
    """Customer H: onboarding, growth, maturity at one year, the salary moving away, silence,
    dormancy, a return, the salary back, closure, and a win-back. Neighbour N, on the same
    partition, logs in every day and so moves the partition's clock while H is silent."""
    h = History("H" + suffix)
    h.add("account.opened", 0, account_id="A1")
    for day in (2, 3, 4):
        h.money("deposit", day, "100.00")
    h.add("product.opened", 20, product={"product_id": "P1", "category": "savings"})
    h.add("product.opened", 21, product={"product_id": "P2", "category": "card"})
    for month in range(14):  # salary days 10, 40, ..., 400
        h.money("transfer.in", 10 + 30 * month, "9000.00", counterparty=EMPLOYER)
    for day in range(12, 431, 7):  # weekly card payments until day 425
        h.money("card.payment", day, "200.00")
    h.money("deposit", 650, "500.00")
    h.money("transfer.in", 660, "9000.00", counterparty=EMPLOYER)
    h.add("account.closed", 720, account_id="A1")
    h.add("account.opened", 730, account_id="A2")

    n = History("N" + suffix)
    n.add("account.opened", 0, account_id="B1")
    for day in range(1, 745, 2):
        n.add("digital.login", day + 0.5, channel="mobile")

    events = sorted(h.in_order() + n.in_order(), key=lambda e: e["occurred_at"])
    for event in events:
        at = datetime.fromisoformat(event["occurred_at"]) + timedelta(days=shift)
        event["occurred_at"] = at.isoformat()
    return [parse_account_event(e) for e in events]


def transitions(outputs: list[Output], customer_id: str) -> list[tuple[str, int, str]]:
    """(what, day, to) for every stage change and churn signal of one customer."""
    found = []
    for o in outputs:
        if o.customer_id != customer_id:
            continue
        day = (o.occurred_at - T0).days
        if isinstance(o, StageChanged) and o.type == "stage.changed":
            found.append(("stage", day, o.stage.value))
        elif isinstance(o, ChurnSignalChanged):
            found.append((o.type.rsplit(".", 1)[1], day, o.signal.value))
    return found


def test_two_years_of_history_give_every_transition_on_its_date() -> None:
    published = run(two_years())
    assert transitions(published, "H") == [
        ("stage", 0, Stage.ACQUISITION),
        ("stage", 4, Stage.GROWTH),  # third customer-initiated transaction
        ("stage", 365, Stage.MATURITY),  # a year of tenure, two products, active
        ("raised", 445, SignalKind.SALARY_STOPPED),  # last salary day 400, + 45
        ("stage", 445, Stage.AT_RISK),  # score 0.6
        ("raised", 470, SignalKind.INACTIVITY),  # last card payment day 425, + 45
        ("stage", 605, Stage.DORMANT),  # day 425 + 180
        ("resolved", 650, SignalKind.INACTIVITY),  # a deposit
        ("stage", 650, Stage.AT_RISK),  # the salary signal is still open
        ("resolved", 660, SignalKind.SALARY_STOPPED),  # the employer pays again
        ("stage", 660, Stage.MATURITY),
        ("stage", 680, Stage.GROWTH),  # a salary is not the customer's own activity: 650 + 30
        ("raised", 695, SignalKind.INACTIVITY),  # 650 + 45
        ("stage", 695, Stage.AT_RISK),
        # One salary after eight months without is not yet a regular payer again: no
        # salary_stopped at 705.
        ("resolved", 720, SignalKind.INACTIVITY),  # the last account closes, ending every signal
        ("stage", 720, Stage.CHURNED),
        ("stage", 730, Stage.ACQUISITION),  # a win-back
    ]
    tiers = [
        ((o.occurred_at - T0).days, o.tier)
        for o in published
        if isinstance(o, StageChanged) and o.customer_id == "H" and o.type == "tier.changed"
    ]
    assert tiers == [(194, Tier.AFFLUENT)]  # the 30-day average crosses 50,000
    win_back = [o for o in published if isinstance(o, StageChanged) and o.customer_id == "H"][-1]
    assert win_back.win_back
    # Every output carries the time of its rule, never the time it happened to be processed.
    assert all(o.occurred_at.hour == 9 for o in published if o.customer_id == "H")


def test_replaying_the_same_history_gives_the_same_outputs_byte_for_byte() -> None:
    first, second = run(two_years()), run(two_years())
    assert [o.model_dump_json() for o in first] == [o.model_dump_json() for o in second]


def test_duplicates_in_the_stream_change_nothing() -> None:
    events = two_years()
    noisy = [e for n, event in enumerate(events) for e in [event] * (2 if n % 5 else 1)]
    clean, doubled = run(events), run(noisy)
    assert [o.event_id for o in clean] == [o.event_id for o in doubled]


# -- crashes ---------------------------------------------------------------------------------


def population() -> list[AccountEvent]:
    """Ordinary customers, and customers whose time rules fire while they are silent; one
    event in seven arrives after the next one (events that leave the clock as it was)."""
    sample = simulate(customers=10, days=400, seed=3, invalid_share=0)
    events = [parse_account_event(orjson.loads(line)) for line in sample.lines]
    for n in range(3):
        events += two_years(shift=n * 1.7, suffix=str(n))
    events.sort(key=lambda e: e.occurred_at)
    for n in range(0, len(events) - 1, 7):
        events[n], events[n + 1] = events[n + 1], events[n]
    return events


@pytest.fixture(scope="module")
def reference() -> Published:
    return run(population())


WRITES: dict[str, Callable[[str, bytes | None], bool]] = {
    "customer state": lambda key, value: not key.startswith("#"),
    "clock": lambda key, value: key.startswith("#clock"),
}


def test_every_event_writes_the_clock_last_even_when_it_did_not_move() -> None:
    """A batch writes each key once, at its last write: the clock must then come after every
    state of the batch, also when the batch ends in late events that leave it as it was (a
    clock written before a state it has run ahead of would judge replayed events later)."""
    events = population()[:2000]
    store = Recorder()
    worker = Worker(store, Published()).run(events)
    ends = [worker.began[n + 1] for n in range(len(events) - 1)] + [len(store.log)]
    assert all(store.log[end - 1][0] == "#clock:0" for end in ends)


def hard_moments(published: Published, events: list[AccountEvent]) -> list[int]:
    """Input offsets where a crash is most harmful: those at which the clock woke silent
    customers who then had outputs, and each such customer's last event before it."""
    moments: set[int] = set()
    for output in published:
        woken_at = published.first_at[output.event_id]
        if events[woken_at].customer_id == output.customer_id:
            continue
        own = [n for n in range(woken_at) if events[n].customer_id == output.customer_id]
        moments.update({woken_at, *own[-1:]})
    return sorted(moments)


def as_batch(log: list[tuple[str, bytes | None]]) -> list[tuple[str, bytes | None]]:
    """The writes of one batch as the worker's staging makes them: each key only at its last
    write (services/runtime/staging.py, `latest_only`)."""
    last = {key: n for n, (key, _) in enumerate(log)}
    return [(key, value) for n, (key, value) in enumerate(log) if last[key] == n]


@pytest.mark.parametrize("batched", [False, True], ids=["per event", "batched"])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("last_write", WRITES)
def test_a_crash_after_any_write_loses_and_doubles_nothing(
    seed: int, last_write: str, batched: bool, reference: Published
) -> None:
    """The worker commits its offset at some event, goes on, and dies just after a write of the
    given kind made while handling an event that woke silent customers (the hardest moment); the
    changelog keeps the writes up to the commit and those up to the crash. The restarted worker
    resumes from the commit on the recovered store. Three crashes per run. Outputs, deduplicated
    by event_id, equal an uninterrupted run's exactly, payloads included, and none is late: each
    is first published at the same input offset. `batched`: the events up to the commit and
    those after it are each one batch, which writes each key once, at its last write; the crash
    falls after any write of the kind in the second batch."""
    events = population()
    rng = random.Random(seed)
    targets = hard_moments(reference, events)
    published = Published()
    log: list[tuple[str, bytes | None]] = []
    position = 0
    for n in range(3):
        target = rng.choice(targets[n * len(targets) // 3 : (n + 1) * len(targets) // 3])
        committed = max(position, target - rng.randrange(0, 50))
        store = restore(log)
        worker = Worker(store, published).run(events[position:committed], position)
        durable = len(store.log)
        worker.run(events[committed : target + 1], committed)
        if batched:
            settled = as_batch(store.log[:durable])
            batch = as_batch(store.log[durable:])
            cuts = [i + 1 for i, write in enumerate(batch) if WRITES[last_write](*write)]
            log += settled + batch[: rng.choice(cuts) if cuts else 0]
        else:
            during = range(worker.began[target], len(store.log))
            cuts = [i + 1 for i in during if WRITES[last_write](*store.log[i])]
            log += store.log[: rng.choice(cuts) if cuts else durable]
        position = committed
    Worker(restore(log), published).run(events[position:], position)

    assert published.by_id() == reference.by_id()


def silent_customer_and_a_clock() -> list[AccountEvent]:
    """Q opens an account and goes silent; R's daily logins move the clock past Q's deadlines."""
    opened = History("Q")
    opened.add("account.opened", 0, account_id="A1")
    clock = History("R")
    clock.add("account.opened", 0, account_id="B1")
    for day in range(1, 120):
        clock.add("digital.login", day + 0.5, channel="mobile")
    events = [parse_account_event(e) for e in opened.in_order() + clock.in_order()]
    return sorted(events, key=lambda e: e.occurred_at)


def dormant_days(published: Published, customer_id: str) -> list[int]:
    return [
        (o.occurred_at - T0).days
        for o in published
        if o.customer_id == customer_id and o.stage is Stage.DORMANT
    ]


def test_a_crash_just_after_a_customers_state_keeps_its_deadline() -> None:
    """The state carries its wake day: the store holding only it (and no clock) still wakes the
    customer; the replayed event is a duplicate."""
    events = silent_customer_and_a_clock()
    published = Published()
    store = Recorder()
    Worker(store, published).run(events[:1])
    state_write = next(i for i, (key, _) in enumerate(store.log) if key == "Q")
    Worker(restore(store.log[: state_write + 1]), published).run(events, 0)

    assert dormant_days(published, "Q") == [90]


def test_a_store_of_the_earlier_calendar_wakes_its_customers() -> None:
    """A store written before the calendar moved into the states' heads (plain JSON states,
    a list of customers per `#due:` day) is taken up: the listed customers wake on their day,
    and are written in the new form when saved."""
    events = silent_customer_and_a_clock()
    published = Published()
    store = Recorder()
    Worker(store, published).run(events[:2])
    wake_day = Calendar.of(store).placed["Q"][1]
    legacy = {
        key: value[value.index(b"|") + 1 :] if not key.startswith("#") else value
        for key, value in store.items()
    }
    legacy[f"#due:0:{wake_day}"] = orjson.dumps(["Q"])
    worker = Worker(restore(list(legacy.items())), published).run(events[2:], 2)

    assert dormant_days(published, "Q") == [90]
    assert worker.store["Q"].startswith(b"0 ")


def test_the_calendar_is_what_the_states_heads_say() -> None:
    store = Recorder()
    Worker(store, Published()).run(population()[:400])
    calendar = Calendar.of(store)
    assert calendar.placed
    for customer_id, (partition, day) in calendar.placed.items():
        assert store[customer_id].startswith(b"%d %d|" % (partition, day))
        assert customer_id in calendar.days[partition][day]
    # Placing a customer again moves it; placing it nowhere takes it off.
    customer_id, (partition, day) = next(iter(calendar.placed.items()))
    calendar.place(customer_id, partition, day + 3)
    assert customer_id in calendar.days[partition][day + 3]
    assert customer_id not in calendar.days[partition].get(day, {})
    calendar.place(customer_id, partition, None)
    assert customer_id not in calendar.placed


# -- idle partitions (docs/lifecycle.md, "Time") ----------------------------------------------


def on_two_partitions(
    events: list[AccountEvent], quiet: str, follow_after: int | None = None
) -> tuple[Published, Recorder, LifecycleService]:
    """`quiet`'s events on partition 1, the others' on partition 0; with `follow_after`,
    partition 1 (idle: no event of it comes after that many events) follows partition 0's
    clock after each event from there on, as the worker's idle check does."""
    published = Published()
    store = Recorder()
    worker = Worker(store, published)
    service = worker.service

    async def go() -> None:
        for worker.offset, event in enumerate(events):
            await service.handle(event, partition=1 if event.customer_id == quiet else 0)
            if follow_after is not None and worker.offset >= follow_after:
                target = service.clock(0)
                assert target is not None
                await service.follow(1, target, lambda: True)

    asyncio.run(go())
    return published, store, service


def test_an_idle_partition_follows_the_others_clock_and_wakes_its_customers_on_their_dates() -> (
    None
):
    """Q opens an account on partition 1 and goes silent; R moves partition 0's clock. Idle,
    partition 1 follows it: Q goes dormant on day 90, as Q would had R been on its partition.
    Without following, Q's partition never passes the deadline."""
    events = silent_customer_and_a_clock()
    alone, _, _ = on_two_partitions(events, quiet="Q")
    assert dormant_days(alone, "Q") == []
    followed, store, service = on_two_partitions(events, quiet="Q", follow_after=1)
    shared = run(events)
    assert dormant_days(followed, "Q") == [90]
    q = {o.event_id: o.model_dump_json() for o in followed if o.customer_id == "Q"}
    assert q == {o.event_id: o.model_dump_json() for o in shared if o.customer_id == "Q"}
    # Its clock is written last, with the clock it followed as its floor.
    clock = orjson.loads(store["#clock:1"])
    assert clock["floor"] == service.clock(0).isoformat()  # type: ignore[union-attr]
    assert store.log[-1][0] == "#clock:1"


def test_following_writes_states_before_the_clock_and_only_when_idle_and_a_day_ahead() -> None:
    events = silent_customer_and_a_clock()
    _, store, service = on_two_partitions(events[:2], quiet="Q")
    before = len(store.log)

    async def follow(days: float, idle: bool = True) -> bool:
        target = T0 + timedelta(days=days)
        return await service.follow(1, target, lambda: idle)

    assert not asyncio.run(follow(200, idle=False))  # a record came meanwhile
    assert not asyncio.run(service.follow(2, T0 + timedelta(days=200), lambda: True))  # no clock
    now = service.clock(1)
    assert now is not None
    assert not asyncio.run(follow((now - T0).total_seconds() / 86400 + 0.1))  # the same day
    assert len(store.log) == before
    assert asyncio.run(follow(200))
    keys = [key for key, _ in store.log[before:]]
    assert keys[-1] == "#clock:1" and "Q" in keys[:-1]
    assert service.clock(1) == T0 + timedelta(days=200)


def test_an_event_after_following_is_judged_at_the_clock_followed() -> None:
    """Records that come again after an idle period: the partition's clock does not go back;
    an event older than it counts as late, and its own clock takes over once it passes."""
    events = silent_customer_and_a_clock()
    _, store, service = on_two_partitions(events[:2], quiet="Q")
    asyncio.run(service.follow(1, T0 + timedelta(days=30), lambda: True))
    q = History("Q")
    q.add("digital.login", 10, channel="mobile")
    q.add("digital.login", 40, channel="mobile")
    late, later = [parse_account_event(e) for e in q.in_order()]
    late = late.model_copy(update={"event_id": "Q-late"})
    later = later.model_copy(update={"event_id": "Q-later"})
    assert asyncio.run(service.handle(late, 1)).late
    assert service.clock(1) == T0 + timedelta(days=30)
    assert "floor" in orjson.loads(store["#clock:1"])
    assert not asyncio.run(service.handle(later, 1)).late
    assert service.clock(1) == T0 + timedelta(days=39)
    assert "floor" not in orjson.loads(store["#clock:1"])
