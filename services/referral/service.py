"""The referral service layer: account events and the internal steps (links, chain matches,
candidates, decisions) through the rules, over plain key-value stores (changelogged faust tables
in the worker, dicts in the tests) and async callbacks for publishing and code lookups.

Write order, as in the lifecycle service: every output and every internal step is acknowledged
before the state that records it is written, so a crash at any point replays into the same
outputs (their ids are derived from their content) and the same steps (deduplicated by the
receiving state). A customer's state is changed by two streams (account events and steps); a
per-customer lock keeps their read-modify-write cycles apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from schemas.account_events import (
    INCOME_PURPOSES,
    AccountEvent,
    CustomerUpdated,
    Position,
    TransferIn,
    TransferOut,
    is_customer_initiated,
)
from schemas.referral import LeadChanged, ReferralChanged
from services.referral.domain import (
    Candidate,
    ChainMatch,
    CodeGrant,
    CounterpartyOutcome,
    CounterpartyState,
    CustomerReferralState,
    Link,
    Movement,
    RefereeOutcome,
    ReferralRules,
    await_decision,
    decide,
    decide_awaiting,
    expire,
    lead_expires_at,
    link,
    on_account_event,
    on_chain_match,
    on_decision,
    on_review,
)
from services.referral.steps import (
    LinkRecord,
    Step,
    StepMark,
    Watermark,
    low_day,
    note_idle,
    release_day,
    source_state,
)
from services.runtime.pseudonym import counterparty_key, name_key

Store = MutableMapping[str, bytes]
ReferralOutput = LeadChanged | ReferralChanged


@dataclass
class Ports:
    """Where the service's effects go; each returns once the broker has the record."""

    publish: Callable[[list[ReferralOutput]], Awaitable[None]]
    send_links: Callable[[list[Link]], Awaitable[None]]
    # To every partition of the links topic.
    broadcast_watermark: Callable[[Watermark], Awaitable[None]]
    send_steps: Callable[[list[Step]], Awaitable[None]]
    # To every partition of the steps topic.
    broadcast_mark: Callable[[StepMark], Awaitable[None]]
    lookup_code: Callable[[str], Awaitable[CodeGrant | None]]


@dataclass
class _Locks:
    """One asyncio lock per customer being handled, dropped when no task holds or awaits it."""

    held: dict[str, tuple[asyncio.Lock, int]] = field(default_factory=dict)

    async def run(self, key: str, work: Callable[[], Awaitable[None]]) -> None:
        lock, users = self.held.get(key, (asyncio.Lock(), 0))
        self.held[key] = (lock, users + 1)
        try:
            async with lock:
                await work()
        finally:
            lock, users = self.held[key]
            if users == 1:
                del self.held[key]
            else:
                self.held[key] = (lock, users - 1)


class ReferralService:
    """The three keyed steps of the referral rules over two stores."""

    def __init__(
        self,
        customers: Store,
        counterparties: Store,
        ports: Ports,
        rules: ReferralRules,
        secret: bytes,
        *,
        sources: int,
        lateness: timedelta,
    ) -> None:
        self.sources = sources
        self.lateness = lateness
        self.customers = customers
        self.counterparties = counterparties
        self.ports = ports
        self.rules = rules
        self.secret = secret
        self.locks = _Locks()
        # Referrals and leads changed since the read model last took them.
        self.changed: list[ReferralOutput] = []
        # The latest event time of each input partition not yet told to the links partitions.
        self.source_seen: dict[int, datetime] = {}
        # The newest event time of each input partition handled by this process.
        self.newest: dict[int, datetime] = {}
        # The input partitions whose receivers count them as not idle, as far as this process
        # knows: since it took them, it sent them a mark that is not idle. The first batch of
        # any other sends one even when its day did not advance.
        self.counted: set[int] = set()
        # A partition's marks, idle or not, go out one at a time and in the order decided.
        self.marks_lock = asyncio.Lock()
        # Links and steps partitions whose every input source was idle at their last mark: a
        # late link or candidate that reaches them is applied at once (in memory: a hint, the
        # stored marks decide).
        self.quiet_links: set[int] = set()
        self.quiet_steps: set[int] = set()

    def customer(self, customer_id: str) -> CustomerReferralState | None:
        raw = self.customers.get(customer_id)
        return None if raw is None else CustomerReferralState.model_validate_json(raw)

    def counterparty(self, key: str) -> CounterpartyState | None:
        raw = self.counterparties.get(key)
        return None if raw is None else CounterpartyState.model_validate_json(raw)

    def movement(self, event: AccountEvent, position: Position | None = None) -> Movement:
        """What the rules need of an account event, with counterparties keyed: the raw
        account number of another bank goes no further than this function."""
        key = own_account = kind = name = holder = None
        business = income = own_elsewhere = False
        purpose = getattr(event, "purpose", None)
        if isinstance(event, TransferIn):
            income = event.purpose in INCOME_PURPOSES
        if isinstance(event, TransferIn | TransferOut):
            cp = event.counterparty
            business = cp.kind == "business"
            kind = cp.kind
            own_elsewhere = bool(cp.own_account)
            if cp.institution in self.rules.home_bank_codes:
                own_account = cp.account.strip()
            else:
                key = counterparty_key(cp.bank_code, cp.account, self.secret)
                name = None if cp.name is None else name_key(cp.name, self.secret)
        hashes: tuple[str, ...] = ()
        if isinstance(event, CustomerUpdated):
            profile = event.profile
            hashes = tuple(h for h in (profile.phone_hash, *profile.device_hashes) if h)
            holder = None if profile.name is None else name_key(profile.name, self.secret)
        return Movement(
            event_id=event.event_id,
            event_type=str(event.event_type),
            occurred_at=event.occurred_at,
            account_id=event.account_id,
            amount=getattr(event, "amount", None) or Decimal(0),
            channel=str(event.channel) if event.channel else None,
            referral_code=getattr(event, "referral_code", None),
            counterparty_key=key,
            counterparty_own_bank_account=own_account,
            counterparty_business=business,
            counterparty_kind=kind,
            counterparty_own_account=own_elsewhere,
            counterparty_name_key=name,
            holder_name_key=holder,
            purpose=None if purpose is None else str(purpose),
            income=income,
            initiated=is_customer_initiated(event),
            hashes=hashes,
            position=position,
        )

    async def handle_account_event(
        self, event: AccountEvent, partition: int, offset: int | None = None
    ) -> None:
        """`offset`: the record's, so that a redelivery is known however long ago the event
        was applied (None: no position, duplicates are known by their ids only)."""
        movement = self.movement(event, None if offset is None else (partition, offset))

        async def work() -> None:
            code = None
            if movement.event_type == "account.opened" and movement.referral_code:
                code = await self.ports.lookup_code(movement.referral_code)
            outcome = on_account_event(
                self.customer(event.customer_id),
                event.customer_id,
                movement,
                code,
                self.rules,
                owned=True,
            )
            await self._commit(outcome)

        await self.locks.run(event.customer_id, work)
        seen = self.source_seen.get(partition)
        self.source_seen[partition] = (
            event.occurred_at if seen is None else max(seen, event.occurred_at)
        )
        newest = self.newest.get(partition)
        if newest is None or event.occurred_at > newest:
            self.newest[partition] = event.occurred_at

    async def advance_source(self, partition: int) -> None:
        """After a batch of an input partition's events: tell the links partitions how far it
        has got, when that passed a day of event time (less the allowed lateness); they apply
        links in event-time order up to there. Once per batch, not per event: a replay of
        sparse history, where nearly every event passes a day, had sent a mark per event to
        every links partition, and each of those a mark to every steps partition: the marks
        were two thirds of the worker's changelog records, and every mark that released links
        rewrote every counterparty with links pending. Only the last day sent is stored, with
        the day before which every link of the partition was sent (for its idle marks).

        A partition that may have been told idle (`counted`) sends its mark even when its day
        did not advance: its receivers then count it again."""
        occurred_at = self.source_seen.pop(partition, None)
        if occurred_at is None:
            return
        key = f"#source:{partition}"
        day = (occurred_at - self.lateness).toordinal()
        sent, stored_through = source_state(self.customers.get(key))
        if day > sent or partition not in self.counted:
            async with self.marks_lock:
                told = max(day, sent)
                await self.ports.broadcast_watermark(Watermark(source=partition, day=told))
                await self.ports.broadcast_mark(StepMark(source=f"input:{partition}", day=told))
                self.counted.add(partition)
        through = max(stored_through, occurred_at.toordinal() + 1)
        if day > sent or through > stored_through:
            self.customers[key] = b"%d %d" % (max(day, sent), through)

    async def announce_idle(self, partition: int, still_idle: Callable[[], bool]) -> bool:
        """Tell every links and steps partition that an input partition is idle: every link
        and candidate it has was sent (its records are all settled, so they were acknowledged
        before these marks are sent), dated before `through`. `still_idle` is asked under the
        marks' lock, just before they are sent: a record that came meanwhile cancels them.
        Returns whether they were sent. Writes no table: a process that did not announce a
        partition idle (after a restart, a rebalance) sends its next ordinary mark anyway."""
        async with self.marks_lock:
            if not still_idle() or partition in self.source_seen:
                return False
            day, through = source_state(self.customers.get(f"#source:{partition}"))
            newest = self.newest.get(partition)
            if newest is not None:
                through = max(through, newest.toordinal() + 1)
            # First: should the marks go out only in part, its next batch still sends an
            # ordinary mark.
            self.counted.discard(partition)
            await self.ports.broadcast_watermark(
                Watermark(source=partition, day=day, idle=True, through=through)
            )
            await self.ports.broadcast_mark(
                StepMark(source=f"input:{partition}", day=day, idle=True, through=through)
            )
            return True

    async def handle_link_record(self, record: LinkRecord, partition: int) -> None:
        """Links wait in their counterparty's state until every input partition has passed
        their day, then apply in event-time order: the leads and chain matches then do not
        depend on how the input partitions interleave, nor on how many workers there are."""
        if record.link is not None:
            item = record.link
            state = self.counterparty(item.counterparty_key) or CounterpartyState(
                key=item.counterparty_key
            )
            if item.event_id in state.seen or any(
                p.event_id == item.event_id for p in state.pending
            ):
                return
            if not state.pending:
                # Its first pending link: index the counterparty, before the state, so that no
                # pending link is ever left out of the index (an indexed key with nothing
                # pending is harmless).
                _add_to_index(self.counterparties, f"#pending:{partition}", item.counterparty_key)
            state.pending.append(item)
            self.counterparties[item.counterparty_key] = state.model_dump_json().encode()
            if partition in self.quiet_links:
                await self._late_link(item, partition)
        elif record.watermark is not None:
            await self._watermark(record.watermark, partition)

    async def _watermark(self, mark: Watermark, partition: int) -> None:
        """Links are released up to the day every input partition has passed; an idle one
        holds nothing back (docs/referral.md, "Idle input partitions")."""
        marks_key = f"#marks:{partition}"
        marks = orjson.loads(self.counterparties.get(marks_key) or b"{}")
        sources = marks.setdefault("sources", {})
        source = str(mark.source)
        sources[source] = max(sources.get(source, 0), mark.day)
        idle = note_idle(marks, source, mark)
        if len(sources) < self.sources:
            self.counterparties[marks_key] = orjson.dumps(marks)
            return
        low = release_day(sources, idle)
        released = marks.get("released", 0)
        all_idle = len(idle) == len(sources)
        if low > released:
            await self._release(partition, low)
            marks["released"] = low
        elif mark.idle and all_idle and 0 < low == released:
            # Every input idle and nothing new to release: links that came late meanwhile
            # (dated before the day released) are applied now, as a busy feed's next release
            # would apply them.
            await self._release(partition, released)
        if all_idle:
            self.quiet_links.add(partition)
        else:
            self.quiet_links.discard(partition)
        self.counterparties[marks_key] = orjson.dumps(marks)

    async def _late_link(self, item: Link, partition: int) -> None:
        """A link that reaches a links partition whose every input is idle, dated before the
        day it released: no release will come for it until an input moves on, so it is
        applied now (late input is applied as it comes)."""
        marks = orjson.loads(self.counterparties.get(f"#marks:{partition}") or b"{}")
        sources, idle = marks.get("sources", {}), marks.get("idle", {})
        released = marks.get("released", 0)
        if len(sources) >= self.sources and len(idle) == len(sources):
            if item.occurred_at.toordinal() < released:
                await self._release(partition, released)
        else:
            self.quiet_links.discard(partition)

    async def _release(self, partition: int, day: int) -> None:
        """Apply, in event-time order, every pending link dated before `day`; then lapse the
        leads whose expiry falls before it."""
        index_key = f"#pending:{partition}"
        still: list[str] = []
        expiring: dict[int, set[str]] = {}
        for key in orjson.loads(self.counterparties.get(index_key) or b"[]"):
            state = self.counterparty(key)
            if state is None:
                continue
            ready = sorted(
                (p for p in state.pending if p.occurred_at.toordinal() < day),
                key=lambda p: (p.occurred_at, p.event_id),
            )
            rest = [p for p in state.pending if p.occurred_at.toordinal() >= day]
            leads: list[ReferralOutput] = []
            matches: list[ChainMatch] = []
            for item in ready:
                outcome = link(state, item, self.rules, owned=True)
                state = outcome.state
                leads += outcome.leads
                matches += outcome.matches
            await self._publish(leads)
            await self.ports.send_steps([Step(chain_match=m) for m in matches])
            state.pending = rest
            self.counterparties[key] = state.model_dump_json().encode()
            if rest:
                still.append(key)
            if (expires_at := lead_expires_at(state, self.rules)) is not None:
                expiring.setdefault(expires_at.toordinal(), set()).add(key)
        self._index_expiries(partition, expiring)
        self.counterparties[index_key] = orjson.dumps(still)
        await self._expire(partition, day)
        # After the chain matches it sent: the steps partitions may go on to this day.
        await self.ports.broadcast_mark(StepMark(source=f"links:{partition}", day=day))

    def _index_expiries(self, partition: int, expiring: dict[int, set[str]]) -> None:
        """File each live lead under the day its lead would lapse. A lead that gets a later
        tie is filed again under its new day and found alive when the old one comes up."""
        days_key = f"#expiry-days:{partition}"
        days = set(orjson.loads(self.counterparties.get(days_key) or b"[]"))
        for expiry_day, keys in expiring.items():
            bucket_key = f"#expiry:{partition}:{expiry_day}"
            bucket = set(orjson.loads(self.counterparties.get(bucket_key) or b"[]"))
            if not keys <= bucket:
                self.counterparties[bucket_key] = orjson.dumps(sorted(bucket | keys))
            days.add(expiry_day)
        if expiring:
            self.counterparties[days_key] = orjson.dumps(sorted(days))

    async def _expire(self, partition: int, day: int) -> None:
        """`lead.expired` for every lead of this partition whose expiry falls before `day`:
        every link before `day` has been applied, so no tie can still save it. The events go
        out before the states and the index change (a crash repeats the same events)."""
        days_key = f"#expiry-days:{partition}"
        days = orjson.loads(self.counterparties.get(days_key) or b"[]")
        due = [d for d in days if d < day]
        if not due:
            return
        before = datetime.fromordinal(day).replace(tzinfo=UTC)
        for expiry_day in due:
            bucket_key = f"#expiry:{partition}:{expiry_day}"
            for key in orjson.loads(self.counterparties.get(bucket_key) or b"[]"):
                state = self.counterparty(key)
                if state is None:
                    continue
                outcome = CounterpartyOutcome(state)
                expire(state, outcome, before, self.rules)
                if outcome.leads:
                    await self._publish(list(outcome.leads))
                    self.counterparties[key] = state.model_dump_json().encode()
            del self.counterparties[bucket_key]
        self.counterparties[days_key] = orjson.dumps([d for d in days if d >= day])

    async def handle_step(self, step: Step, partition: int) -> None:
        if step.mark is not None:
            await self._step_mark(step.mark, partition)
            return

        late = False

        async def work() -> None:
            nonlocal late
            if step.chain_match is not None:
                await self._commit(
                    on_chain_match(self.customer(step.customer_id), step.chain_match)
                )
            elif step.candidate is not None and self._released_past(step.candidate, partition):
                # A funding check dated before what this partition released (made when a
                # decision reached its referee late): every payment of the referrer's up to
                # its moment is in, and it orders nothing, so it is answered now instead of
                # waiting for a release that may not come until the input moves on.
                state, decisions = decide(
                    self.customer(step.customer_id), step.candidate, self.rules
                )
                await self.ports.send_steps([Step(decision=d) for d in decisions])
                self._save(state)
            elif step.candidate is not None:
                waiting = await_decision(self.customer(step.customer_id), step.candidate)
                if waiting is not None:
                    if len(waiting.awaiting) == 1:
                        # Its first waiting candidate: indexed before the state, as the links.
                        _add_to_index(self.customers, f"#awaiting:{partition}", step.customer_id)
                    self._save(waiting)
                    late = partition in self.quiet_steps
            elif step.decision is not None:
                outcome = on_decision(self.customer(step.customer_id), step.decision, self.rules)
                await self._commit(outcome)
                if outcome.state.awaiting:
                    # The referrals this customer made may have waited for this answer.
                    await self._decide_waiting(outcome.state, partition)
            elif step.review is not None:
                review = step.review
                await self._commit(
                    on_review(
                        self.customer(review.referee),
                        review.referee,
                        review.referral_id,
                        review.approve,
                        review.reviewed_at,
                        self.rules,
                    )
                )

        await self.locks.run(step.customer_id, work)
        if late and step.candidate is not None:
            await self._late_candidate(step.candidate, partition)

    async def _late_candidate(self, candidate: Candidate, partition: int) -> None:
        """A candidate that reaches a steps partition whose every input is idle, dated before
        the day it released: decided now, as `_late_link` applies a late link."""
        marks = orjson.loads(self.customers.get(f"#step-marks:{partition}") or b"{}")
        released = marks.get("released", 0)
        if not self._inputs_idle(marks):
            self.quiet_steps.discard(partition)
        elif candidate.occurred_at.toordinal() < released:
            await self._decide_awaiting(partition, released)

    def _released_past(self, candidate: Candidate, partition: int) -> bool:
        """Whether a funding check's moment is before the day this steps partition released."""
        if not candidate.funding_check:
            return False
        marks = orjson.loads(self.customers.get(f"#step-marks:{partition}") or b"{}")
        released: int = marks.get("released", 0)
        return candidate.occurred_at.toordinal() < released

    def _inputs_idle(self, marks: dict[str, Any]) -> bool:
        return len(marks.get("idle", {})) == self.sources

    async def _step_mark(self, mark: StepMark, partition: int) -> None:
        """Candidates wait at their referrer until every source has passed their day, then are
        decided in event-time order: which referrals of a burst are held, and which leg of a
        ring is rejected, then do not depend on how the partitions interleave. An idle input
        partition holds nothing back (docs/referral.md, "Idle input partitions")."""
        marks_key = f"#step-marks:{partition}"
        marks = orjson.loads(self.customers.get(marks_key) or b"{}")
        marks[mark.source] = max(marks.get(mark.source, 0), mark.day)
        if mark.source.startswith("input:"):
            note_idle(marks, mark.source, mark)
        chain = low_day(marks, "links", self.sources)
        if chain > marks.get("forwarded", 0):
            # The chain matches from every links partition before `chain` were handled here
            # (each links partition sends its mark after its matches), and their candidates
            # sent: tell every steps partition.
            await self.ports.broadcast_mark(StepMark(source=f"steps:{partition}", day=chain))
            marks["forwarded"] = chain
        inputs = {f"input:{n}": marks.get(f"input:{n}", 0) for n in range(self.sources)}
        low = min(release_day(inputs, marks.get("idle", {})), low_day(marks, "steps", self.sources))
        released = marks.get("released", 0)
        all_idle = self._inputs_idle(marks)
        if low > released:
            await self._decide_awaiting(partition, low)
            marks["released"] = low
        elif mark.idle and all_idle and 0 < low == released:
            # As for links: candidates that came late meanwhile are decided now.
            await self._decide_awaiting(partition, released)
        if all_idle:
            self.quiet_steps.add(partition)
        else:
            self.quiet_steps.discard(partition)
        self.customers[marks_key] = orjson.dumps(marks)

    async def _decide_awaiting(self, partition: int, day: int) -> None:
        index_key = f"#awaiting:{partition}"
        before = datetime.fromordinal(day).replace(tzinfo=UTC)
        still: list[str] = []
        for referrer in orjson.loads(self.customers.get(index_key) or b"[]"):

            async def work(referrer: str = referrer) -> None:
                state = self.customer(referrer)
                if state is None or not state.awaiting:
                    return
                state, decisions = decide_awaiting(state, before, self.rules)
                await self.ports.send_steps([Step(decision=d) for d in decisions])
                self._save(state)
                if state.awaiting:
                    still.append(referrer)

            await self.locks.run(referrer, work)
        self.customers[index_key] = orjson.dumps(still)

    async def _decide_waiting(self, state: CustomerReferralState, partition: int) -> None:
        """One referrer's waiting candidates the partition's marks have already released
        (under the referrer's lock: the caller holds it). Those still waiting stay in the
        partition's index, which lists the referrer from its first waiting candidate on."""
        marks = orjson.loads(self.customers.get(f"#step-marks:{partition}") or b"{}")
        released = marks.get("released", 0)
        if not released:
            return
        before = datetime.fromordinal(released).replace(tzinfo=UTC)
        state, decisions = decide_awaiting(state, before, self.rules)
        await self.ports.send_steps([Step(decision=d) for d in decisions])
        self._save(state)

    async def _commit(self, outcome: RefereeOutcome) -> None:
        await self._publish(list(outcome.events))
        await self.ports.send_links(outcome.links)
        await self.ports.send_steps(
            [Step(candidate=c) for c in outcome.candidates]
            + [Step(decision=d) for d in outcome.decisions]
        )
        self._save(outcome.state)

    async def _publish(self, outputs: list[ReferralOutput]) -> None:
        if outputs:
            await self.ports.publish(outputs)
            self.changed.extend(outputs)

    def _save(self, state: CustomerReferralState) -> None:
        self.customers[state.customer_id] = state.model_dump_json().encode()


def _add_to_index(store: Store, key: str, member: str) -> None:
    """Add `member` to the JSON list stored under `key` (a partition's index of the keys that
    hold something waiting)."""
    index = orjson.loads(store.get(key) or b"[]")
    if member not in index:
        store[key] = orjson.dumps([*index, member])
