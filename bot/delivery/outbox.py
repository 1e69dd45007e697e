"""The outbox sender: pending replies out through the channel adapters, in order per person, at least once.

One round (:meth:`OutboxSender.send_round`):

1. **claim** (one short transaction): lease up to ``DELIVERY_BATCH`` due rows, each the *head* of a different
   person's queue (their lowest pending ``seq``). The lease moves the row's ``next_attempt_at`` forward and
   counts the attempt; on PostgreSQL the claiming SELECT uses ``FOR UPDATE SKIP LOCKED`` so several workers
   never claim the same row nor wait on each other. Because only heads are claimed and a leased head is not due,
   a person's later reply can never be sent before an earlier one is sent or given up;
2. **check** each row against what the channel allows: the person is not marked unreachable, and the channel's
   reply window (Zalo OA 7 days, Messenger 24 h, counted from their last message) is still open; otherwise the
   row fails at once with the reason;
3. **send** in parallel (different people only) with ``skip_parts=parts_sent``, so a retry never resends the
   parts of a split message the provider already accepted;
4. **record** each result as it arrives (compare-and-set on the lease, so a worker whose lease ran out cannot
   overwrite the result of the worker that took over): ``sent``; ``pending`` again with exponential backoff and
   jitter for a retryable failure (network, timeout, 5xx, 429, provider rate or quota codes; a provider's
   ``retry_after`` is respected and a rate limit pauses the whole channel in this process); ``failed`` when the
   provider refuses for good, after ``DELIVERY_MAX_ATTEMPTS``, or when the person is unreachable (the identity is
   marked ``unreachable_at`` and the rest of their queue fails with it).

Delivery is at least once: a worker killed between the provider's acceptance and step 4 leaves a row that is
sent again when its lease ends. A part recorded as sent is never sent again.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import logging
import random
import threading
from collections.abc import Callable, Mapping
from typing import Final

from sqlalchemy.orm import Session

from bot.channels import ChannelAdapter, SendResult
from bot.delivery.settings import DeliverySettings
from bot.store import repository as repo
from bot.store.db import Store, run_in_transaction
from bot.store.models import OutboundStatus, utcnow

__all__ = ["OutboxSender", "SendRound", "backoff_seconds"]

log = logging.getLogger(__name__)

#: Error codes meaning "you are sending too fast" for the whole bot, not just this message: Telegram / HTTP 429,
#: Zalo OA -32 (app rate limit), Graph API 4 / 17 / 32 / 613 (app, user, page and call rate limits).
RATE_LIMIT_CODES: Final = frozenset({"429", "http_429", "-32", "4", "17", "32", "613"})


def backoff_seconds(
    attempt: int, *, base: float, cap: float, retry_after: float | None = None, rng: random.Random | None = None
) -> float:
    """Delay before the next attempt after ``attempt`` failed ones.

    Exponential (``base * 2**(attempt-1)``, at most ``cap``) with "equal jitter": half the delay fixed, half
    random, so workers that failed together do not retry together, yet no retry comes back at once. A
    provider's ``retry_after`` is a floor, even above ``cap``.
    """
    rng = rng or random.Random()
    exponential = min(cap, base * (2 ** max(0, attempt - 1)))
    delay = exponential / 2 + rng.uniform(0, exponential / 2)
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return delay


@dataclasses.dataclass
class SendRound:
    """What one round did."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0


class OutboxSender:
    """Claims, sends and records outbox rows for the channels it has adapters for."""

    def __init__(
        self,
        store: Store,
        adapters: Mapping[str, ChannelAdapter],
        settings: DeliverySettings,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        """Build a sender; its thread pool starts with the first round."""
        self.store = store
        self.adapters = dict(adapters)
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        #: channel → paused until (after a rate limit).
        self._paused: dict[str, dt.datetime] = {}

    def close(self) -> None:
        """Stop the thread pool (waits for sends in flight)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.settings.send_threads, thread_name_prefix="tusoat-send"
                )
            return self._pool

    def channels(self, now: dt.datetime) -> list[str]:
        """Channels to claim for now (not paused by a rate limit)."""
        return [name for name in self.adapters if self._paused.get(name, now) <= now]

    # -- one round -------------------------------------------------------------------------------------------

    def send_round(self, *, identity_id: int | None = None, due_before: dt.datetime | None = None) -> SendRound:
        """Claim a batch of due rows, send them, record every result.

        Args:
            identity_id: Only this person's queue (an RQ job); its head only, so at most one row.
            due_before: Only rows due before this time (a sweeper leaving recent work to other workers).
        """
        now = self.clock()
        channels = self.channels(now)
        lease_until = now + dt.timedelta(seconds=self.settings.lease_seconds)
        with self.store.sessions() as session:
            claims = run_in_transaction(
                session,
                lambda s: repo.claim_outbox(
                    s,
                    now=now,
                    lease_until=lease_until,
                    channels=channels,
                    limit=1 if identity_id is not None else self.settings.batch,
                    identity_id=identity_id,
                    due_before=due_before,
                ),
            )
            stats = SendRound(claimed=len(claims))
            if not claims:
                return stats
            outcomes: list[repo.OutboxOutcome] = []
            to_send: list[repo.OutboxClaim] = []
            for claim in claims:
                refusal = self._refusal(claim, now)
                if refusal is not None:
                    outcomes.append(refusal)
                else:
                    to_send.append(claim)
            if outcomes:
                self._record(session, outcomes, stats)
            if len(to_send) == 1:
                # Common in RQ jobs and at low load: no thread hop.
                self._record(session, [self._send(to_send[0])], stats)
            elif to_send:
                pending = {self._executor().submit(self._send, claim) for claim in to_send}
                while pending:
                    done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                    self._record(session, [f.result() for f in done], stats)
        return stats

    def _record(self, session: Session, outcomes: list[repo.OutboxOutcome], stats: SendRound) -> None:
        """Record outcomes in one transaction and count them."""
        now = self.clock()
        recorded = run_in_transaction(session, lambda s: repo.finish_outbox(s, outcomes, now=now))
        if recorded != len(outcomes):
            log.warning("%d outbox result(s) not recorded: lease lost to another worker", len(outcomes) - recorded)
        for outcome in outcomes:
            if outcome.status is OutboundStatus.SENT:
                stats.sent += 1
            elif outcome.status is OutboundStatus.PENDING:
                stats.retried += 1
            else:
                stats.failed += 1

    def _refusal(self, claim: repo.OutboxClaim, now: dt.datetime) -> repo.OutboxOutcome | None:
        """The outcome of a row that must not be sent at all, or None to send it."""

        def fail(reason: str) -> repo.OutboxOutcome:
            log.info("outbox %s row %d (seq %d) not sent: %s", claim.channel, claim.id, claim.seq, reason)
            return repo.OutboxOutcome(claim, OutboundStatus.FAILED, claim.parts_sent, error=reason)

        adapter = self.adapters[claim.channel]
        if not claim.payload:
            return fail("no_payload: the message text was erased")
        if not claim.address:
            return fail("no_address: the person's channel id was erased")
        if claim.unreachable_at is not None and (
            claim.last_seen_at is None or claim.last_seen_at <= claim.unreachable_at
        ):
            return fail(f"unreachable since {claim.unreachable_at.isoformat()} and no message since")
        if not adapter.within_window(claim.last_seen_at, now):
            window = adapter.interaction_window
            last = claim.last_seen_at.isoformat() if claim.last_seen_at else "never"
            return fail(f"outside_window: last message from the person {last}; {claim.channel} allows {window}")
        return None

    def _send(self, claim: repo.OutboxClaim) -> repo.OutboxOutcome:
        """Send one claimed row (runs on the pool) and turn the result into an outcome."""
        now = self.clock()
        if (claim.lease_until - now).total_seconds() < self.settings.lease_seconds / 2:
            # Waited too long in the pool: the lease may not cover the send. Hand it back untouched.
            return repo.OutboxOutcome(claim, OutboundStatus.PENDING, claim.parts_sent, next_attempt_at=now)
        adapter = self.adapters[claim.channel]
        assert claim.payload is not None and claim.address is not None
        try:
            result = adapter.send(claim.address, claim.payload, skip_parts=claim.parts_sent)
        except Exception as exc:
            log.exception("%s adapter raised while sending outbox row %d", claim.channel, claim.id)
            result = SendResult(ok=False, retryable=True, error_code="exception", error_message=repr(exc)[:500])
        return self._outcome(claim, result, self.clock())

    def _outcome(self, claim: repo.OutboxClaim, result: SendResult, now: dt.datetime) -> repo.OutboxOutcome:
        """Map a :class:`SendResult` to what is recorded."""
        parts = max(claim.parts_sent, result.parts_sent)
        if result.ok:
            return repo.OutboxOutcome(claim, OutboundStatus.SENT, parts)
        error = f"{result.error_code or 'error'}: {result.error_message or ''}".strip()
        if result.unreachable:
            log.warning("%s person %d unreachable (%s): replies stopped", claim.channel, claim.identity_id, error)
            return repo.OutboxOutcome(claim, OutboundStatus.FAILED, parts, error=error, unreachable=True)
        if result.retryable and claim.attempts < self.settings.max_attempts:
            if result.retry_after and (result.error_code or "") in RATE_LIMIT_CODES:
                until = now + dt.timedelta(seconds=result.retry_after)
                if self._paused.get(claim.channel, now) < until:
                    self._paused[claim.channel] = until
                    log.warning("%s rate limited: paused for %.0f s", claim.channel, result.retry_after)
            delay = backoff_seconds(
                claim.attempts,
                base=self.settings.retry_base_seconds,
                cap=self.settings.retry_max_seconds,
                retry_after=result.retry_after,
                rng=self.rng,
            )
            return repo.OutboxOutcome(
                claim,
                OutboundStatus.PENDING,
                parts,
                error=f"attempt {claim.attempts}: {error}",
                next_attempt_at=now + dt.timedelta(seconds=delay),
            )
        if result.retryable:
            error = f"gave up after {claim.attempts} attempts: {error}"
        log.error("%s outbox row %d failed: %s", claim.channel, claim.id, error)
        return repo.OutboxOutcome(claim, OutboundStatus.FAILED, parts, error=error)
