"""One-time codes that link a collaborator's chat identity to their account (docs/CONTRACTS.md §7).

A collaborator makes a code on the web (:func:`create_link_code`, shown once) and types it in the chat
("liên kết 12345678"). The conversation engine turns that into a ``link`` event; the pipeline redeems the code
(:func:`redeem_link_code`) inside the transaction of that message and tells the engine the outcome.

* Only the SHA-256 of a code is stored, never the code.
* A code is 8 digits, valid for 30 minutes, and works once: redeeming is a single conditional UPDATE, so two
  chats racing with the same code cannot both win.
* Making a new code retires the account's codes not used yet, so at most one code per account is live.
* Nothing here commits: the caller's transaction does (``run_in_transaction``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.store.models import Identity, LinkCode, User

__all__ = ["CODE_DIGITS", "CODE_VALIDITY", "code_hash", "create_link_code", "normalize_code", "redeem_link_code"]

#: Digits of a code: easy to type on a phone keypad; guessing is slowed by the engine, which lets one chat try
#: only a few wrong codes an hour, and by the 30-minute validity with one live code per account.
CODE_DIGITS: Final = 8
#: How long a code works after it is made.
CODE_VALIDITY: Final = dt.timedelta(minutes=30)
#: Attempts at drawing a code whose hash is not in the table yet (old codes stay for the record).
_DRAWS: Final = 20
_NOISE: Final = re.compile(r"[\s\-.]+")


def normalize_code(code: str) -> str | None:
    """Return the 8 digits of a typed code ("1234 5678", "1234-5678"), or None when it is not one."""
    if not isinstance(code, str):
        return None
    digits = _NOISE.sub("", code)
    return digits if len(digits) == CODE_DIGITS and digits.isascii() and digits.isdigit() else None


def code_hash(code: str) -> str:
    """The stored form of a code: SHA-256, hex."""
    return hashlib.sha256(code.encode("ascii")).hexdigest()


def create_link_code(session: Session, user: User, now: dt.datetime) -> str:
    """Make a new code for ``user`` and return it (the only time it is seen); retire their unused ones.

    Args:
        session: The caller's session, inside its transaction.
        user: The account the chat will be linked to (normally a collaborator).
        now: Current time (aware).

    Returns:
        The 8-digit code.
    """
    # An earlier code not used yet stops working: only the newest one shown on the page is valid.
    session.execute(
        update(LinkCode)
        .where(LinkCode.user_id == user.id, LinkCode.used_at.is_(None), LinkCode.expires_at > now)
        .values(expires_at=now)
    )
    for _ in range(_DRAWS):
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        digest = code_hash(code)
        taken = session.execute(select(LinkCode.id).where(LinkCode.code_hash == digest)).first()
        if taken is None:
            break
    else:  # pragma: no cover - 20 draws into a table of 10^8 codes
        raise RuntimeError("could not draw an unused link code")
    session.add(LinkCode(user_id=user.id, code_hash=digest, created_at=now, expires_at=now + CODE_VALIDITY))
    session.flush()
    return code


def redeem_link_code(session: Session, code: str, identity_id: int, now: dt.datetime) -> User | None:
    """Use ``code`` to link chat identity ``identity_id`` to the code's account.

    The code is spent by one conditional UPDATE (unused and not expired), so it works once even under
    concurrency. A code of an account that has been deactivated is spent but links nothing.

    Args:
        session: The caller's session, inside its transaction (the pipeline's, holding the identity lock).
        code: What the person typed (8 digits, spaces allowed).
        identity_id: The chat identity to link.
        now: Current time (aware).

    Returns:
        The linked account, or None for a wrong, expired or already used code.
    """
    digits = normalize_code(code)
    if digits is None:
        return None
    row = session.execute(
        update(LinkCode)
        .where(
            LinkCode.code_hash == code_hash(digits),
            LinkCode.used_at.is_(None),
            LinkCode.expires_at > now,
        )
        .values(used_at=now, identity_id=identity_id)
        .returning(LinkCode.user_id)
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        return None
    session.execute(
        update(Identity)
        .where(Identity.id == identity_id)
        .values(user_id=user.id)
        .execution_options(synchronize_session=False)
    )
    return user
