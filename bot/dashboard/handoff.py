"""The hand-off to the commune review: record an official's outcome and tell the household through its chat.

A shared assessment enters the queue when it is stored (``record_assessment`` inserts its ``reviews`` row,
status ``queued``). The official records the outcome here: recognised poor, recognised near-poor or not
recognised, with a note. The household is told in Vietnamese through the channel it used: a ``pending``
outbox row for push channels (Zalo, Telegram, Messenger), which the delivery worker sends; ``notified_at`` is
set when that row is queued. Web, API and console chats cannot be pushed to, and erased or unreachable people
cannot be messaged: then nothing is queued, ``notified_at`` stays empty and the page asks the official to tell
the household in person.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from assessment.geo import commune_by_code
from bot.store import repository as repo
from bot.store.models import Assessment, Identity, Review, ReviewStatus

__all__ = ["OUTCOMES", "PUSH_CHANNELS", "Outcome", "notification_text", "record_outcome"]

#: Channels the delivery worker can push to (docs/CONTRACTS.md §6: the others reply only in the response).
PUSH_CHANNELS: Final = frozenset({"zalo_oa", "zalo_bot", "telegram", "messenger"})

#: Outcomes an official may record, with how the page names them.
OUTCOMES: Final = {
    ReviewStatus.RECOGNISED_POOR.value: "Công nhận hộ nghèo",
    ReviewStatus.RECOGNISED_NEAR_POOR.value: "Công nhận hộ cận nghèo",
    ReviewStatus.NOT_RECOGNISED.value: "Không thuộc diện hộ nghèo, hộ cận nghèo",
}

#: Longest note kept (and sent).
MAX_NOTE: Final = 2000


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What recording an outcome did."""

    review_id: int
    notified: bool
    reason_not_notified: str | None = None


def notification_text(status: str, commune_name: str, decided_on: dt.date, note: str | None) -> str:
    """The Vietnamese message the household receives about the review outcome."""
    if status == ReviewStatus.RECOGNISED_POOR.value:
        outcome = "hộ gia đình được công nhận là HỘ NGHÈO"
    elif status == ReviewStatus.RECOGNISED_NEAR_POOR.value:
        outcome = "hộ gia đình được công nhận là HỘ CẬN NGHÈO"
    else:
        outcome = "hộ gia đình không thuộc diện hộ nghèo, hộ cận nghèo"
    lines = [
        f"Thông báo từ {commune_name}: kết quả rà soát ngày {decided_on:%d/%m/%Y} theo đề nghị của hộ: {outcome}.",
    ]
    if note:
        lines.append(f"Ghi chú của cán bộ: {note}")
    lines.append(
        f"Nếu có thắc mắc hoặc chưa đồng ý, hộ có thể liên hệ Ủy ban nhân dân {commune_name} để được giải đáp."
    )
    return "\n".join(lines)


def record_outcome(
    session: Session,
    assessment_id: int,
    status: str,
    *,
    note: str | None,
    send_note: bool,
    official_id: int,
    now: dt.datetime,
) -> Outcome:
    """Record the review outcome of a shared assessment and queue the household's notification.

    Runs in the caller's transaction (the view wraps it in ``run_in_transaction``).

    Raises:
        ValueError: For an outcome that is not one of :data:`OUTCOMES`, or an assessment that is not shared.
    """
    if status not in OUTCOMES:
        raise ValueError(f"unknown outcome {status!r}")
    note = (note or "").strip()[:MAX_NOTE] or None
    assessment = session.execute(
        select(Assessment.id, Assessment.identity_id, Assessment.commune_code, Assessment.shared).where(
            Assessment.id == assessment_id
        )
    ).one()
    if not assessment.shared:
        raise ValueError("only shared assessments are reviewed")
    review_id = session.execute(select(Review.id).where(Review.assessment_id == assessment_id)).scalar_one_or_none()
    values = {"status": ReviewStatus(status), "decided_at": now, "decided_by": official_id, "note": note}
    if review_id is None:  # shared before the review queue existed: queue and decide at once
        review = Review(assessment_id=assessment_id, queued_at=now, **values)
        session.add(review)
        session.flush()
        review_id = review.id
    else:
        session.execute(update(Review).where(Review.id == review_id).values(**values))

    reason: str | None = None
    identity = None
    if assessment.identity_id is not None:
        # Lock the person's identity row: the outbox sequence is bumped under it (see repo.append_outbox).
        identity = session.execute(
            select(
                Identity.id, Identity.outbound_seq, Identity.channel, Identity.erased_at, Identity.unreachable_at
            )
            .where(Identity.id == assessment.identity_id)
            .with_for_update()
        ).one_or_none()
    if identity is None:
        reason = "Hộ không dùng kênh trò chuyện (hoặc đã xoá dữ liệu): hãy báo trực tiếp cho hộ."
    elif identity.erased_at is not None:
        reason = "Hộ đã xoá dữ liệu trò chuyện: hãy báo trực tiếp cho hộ."
    elif identity.unreachable_at is not None:
        reason = "Không còn nhắn được cho hộ qua kênh trò chuyện: hãy báo trực tiếp cho hộ."
    elif identity.channel not in PUSH_CHANNELS:
        reason = "Hộ dùng kênh không gửi tin chủ động được (trang web): hãy báo trực tiếp cho hộ."
    if reason is not None:
        return Outcome(review_id=review_id, notified=False, reason_not_notified=reason)

    assert identity is not None
    commune = commune_by_code(assessment.commune_code or "")
    commune_name = commune.name if commune is not None else "Ủy ban nhân dân xã"
    text = notification_text(status, commune_name, now.astimezone(repo.VIETNAM_TZ).date(), note if send_note else None)
    row = repo.IdentityRow(id=identity.id, outbound_seq=identity.outbound_seq)
    repo.append_outbox(session, row, identity.channel, [{"text": text, "choices": []}], now=now, delivered=False)
    session.execute(update(Review).where(Review.id == review_id).values(notified_at=now))
    return Outcome(review_id=review_id, notified=True)
