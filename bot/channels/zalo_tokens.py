"""Zalo OA access tokens: the :class:`TokenStore` interface and an OAuth v4 refreshing implementation.

Zalo OA access tokens live about 25 hours; refresh tokens about 3 months and are **single-use**: every refresh
returns a new refresh token and invalidates the old one (channels.md §1.7). Two consequences shape this module:

* refreshes must be **single-flight**: if two senders both see ``-216`` and both refresh with the same refresh
  token, the second refresh fails and the OA needs a human to re-consent. :meth:`ZaloOATokenStore.refresh`
  therefore takes a lock and, once inside, refreshes only if the token the caller saw is still the current one;
  otherwise someone else already refreshed and the caller just gets the new token;
* the new pair is handed to the ``persist`` callback **before** the new access token is returned to anyone. If
  the process dies after a refresh but before persisting, the only valid refresh token dies with it. When
  ``persist`` fails the pair is kept in memory and persisting is retried on the next call; no caller gets the
  new token until it is saved.

The lock defaults to a :class:`threading.Lock` (one process). Several worker processes should pass a lock that
spans processes (a database advisory lock or ``SELECT ... FOR UPDATE`` wrapped as a context manager) together
with ``load`` reading the saved pair, so a process that waited on the lock adopts the pair another one saved.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol, runtime_checkable

import requests

from bot.channels.base import DEFAULT_TIMEOUT

__all__ = [
    "DEFAULT_OAUTH_BASE",
    "StaticTokenStore",
    "TokenError",
    "TokenPair",
    "TokenPersistError",
    "TokenRefreshError",
    "TokenStore",
    "ZaloOATokenStore",
]

log = logging.getLogger(__name__)

#: OAuth host; the path ``/v4/oa/access_token`` is appended (channels.md §1.7).
DEFAULT_OAUTH_BASE: Final = "https://oauth.zaloapp.com"
OAUTH_PATH: Final = "/v4/oa/access_token"

#: Refresh this long before the access token expires (at ~20 h of the 25 h lifetime, channels.md §6.6).
DEFAULT_REFRESH_MARGIN: Final = dt.timedelta(hours=5)


@dataclass(frozen=True, slots=True)
class TokenPair:
    """An OA access token with the refresh token issued alongside it.

    Attributes:
        access_token: Sent as the ``access_token`` header.
        refresh_token: Single-use; None when the deployment cannot refresh (a pasted dev token).
        access_expires_at: When the access token expires (aware UTC), when known.
        rotated_at: When this pair was issued by a refresh (aware UTC), when known.
    """

    access_token: str
    refresh_token: str | None = None
    access_expires_at: dt.datetime | None = None
    rotated_at: dt.datetime | None = None


class TokenError(Exception):
    """The store could not provide a usable token.

    Attributes:
        retryable: True for temporary failures (network, 5xx, persistence); False when a human must act
            (refresh token rejected or missing: the OA admin must re-consent).
        code: Short machine code for logs and ``SendResult.error_code``.
    """

    def __init__(self, message: str, *, retryable: bool, code: str) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code


class TokenRefreshError(TokenError):
    """The OAuth refresh call failed."""


class TokenPersistError(TokenError):
    """A refreshed pair could not be saved, so it is not handed out yet (it is retried on the next call)."""


@runtime_checkable
class TokenStore(Protocol):
    """Source of the OA access token used by :class:`bot.channels.zalo_oa.ZaloOAAdapter`."""

    def get(self) -> str:
        """Return the access token to use now.

        Raises:
            TokenError: No usable token.
        """
        ...

    def refresh(self, stale_token: str) -> str:
        """Return a token newer than ``stale_token`` (which the API just rejected), refreshing at most once.

        Raises:
            TokenError: The refresh failed.
        """
        ...


class StaticTokenStore:
    """A fixed token that cannot be refreshed (development with a token pasted from the API Explorer)."""

    def __init__(self, access_token: str) -> None:
        """Keep ``access_token``."""
        self._token = access_token

    def get(self) -> str:
        """Return the fixed token."""
        return self._token

    def refresh(self, stale_token: str) -> str:
        """Always fail: there is no refresh token.

        Raises:
            TokenRefreshError: Always, not retryable.
        """
        raise TokenRefreshError(
            "Zalo OA token rejected and no refresh token is configured", retryable=False, code="no_refresh_token"
        )


class ZaloOATokenStore:
    """Refreshing token store: single-flight refresh through OAuth v4, persist-before-use of rotated pairs."""

    def __init__(
        self,
        *,
        app_id: str,
        app_secret: str | None,
        initial: TokenPair | None,
        persist: Callable[[TokenPair], None] | None,
        load: Callable[[], TokenPair | None] | None = None,
        oauth_base: str = DEFAULT_OAUTH_BASE,
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        lock: AbstractContextManager[Any] | None = None,
        clock: Callable[[], dt.datetime] | None = None,
        refresh_margin: dt.timedelta = DEFAULT_REFRESH_MARGIN,
    ) -> None:
        """Build the store.

        Args:
            app_id: Zalo app id (form field ``app_id``).
            app_secret: The **app** secret key (header ``secret_key``); None disables refreshing.
            initial: The pair to start from (from the environment); ``load`` wins when it returns a pair.
            persist: Saves a rotated pair; called before the new token is used. None only logs an error, which
                is acceptable in development alone: after a restart the configured refresh token is spent.
            load: Reads the saved pair (from the database); called once at first use and again inside the lock
                before refreshing, so a pair saved by another process is adopted instead of refreshing twice.
            oauth_base: OAuth host (``https://oauth.zaloapp.com``, or a fake server in tests).
            session: HTTP session.
            timeout: ``requests`` timeout for the refresh call.
            lock: Context manager serialising refreshes; a ``threading.Lock`` when None.
            clock: Current aware UTC time.
            refresh_margin: Refresh proactively this long before ``access_expires_at``.
        """
        self.app_id = app_id
        self.app_secret = app_secret
        self.persist = persist
        self.load = load
        self.oauth_url = oauth_base.rstrip("/") + OAUTH_PATH
        self.session = session or requests.Session()
        self.timeout = timeout
        self.clock: Callable[[], dt.datetime] = clock or (lambda: dt.datetime.now(dt.UTC))
        self.refresh_margin = refresh_margin
        self._lock: AbstractContextManager[Any] = lock if lock is not None else threading.Lock()
        self._pair = initial
        self._loaded = load is None
        self._unsaved: TokenPair | None = None
        #: Number of successful OAuth refreshes made by this store (for tests and metrics).
        self.refresh_count = 0

    # -- TokenStore --------------------------------------------------------------------------------------------

    def get(self) -> str:
        """Return the current access token, refreshing first when it is about to expire.

        A proactive refresh that fails is logged and the current (still valid) token is returned; the reactive
        path (``-216`` → :meth:`refresh`) reports the error if it matters.

        Raises:
            TokenError: No token at all, or a refreshed pair is still unsaved.
        """
        with self._lock:
            self._ensure_loaded()
            self._save_unsaved()
            pair = self._require_pair()
        if self._expiring(pair):
            try:
                return self.refresh(pair.access_token)
            except TokenError as exc:
                log.warning("proactive Zalo OA token refresh failed (%s); using the current token", exc.code)
        return pair.access_token

    def refresh(self, stale_token: str) -> str:
        """Return a token newer than ``stale_token``, calling OAuth only if nobody has refreshed it yet.

        Raises:
            TokenRefreshError: OAuth refused or could not be reached.
            TokenPersistError: The new pair could not be saved; it is kept and saving is retried next call.
        """
        with self._lock:
            self._ensure_loaded(force=True)
            self._save_unsaved()
            pair = self._require_pair()
            if pair.access_token != stale_token:
                # Someone refreshed while we waited for the lock: use theirs, do not spend the refresh token.
                return pair.access_token
            if not pair.refresh_token or not self.app_secret:
                raise TokenRefreshError(
                    "Zalo OA token rejected and refreshing is not configured (refresh token or app secret missing)",
                    retryable=False,
                    code="no_refresh_token",
                )
            new = self._call_oauth(pair.refresh_token)
            # From here the old refresh token is spent: keep the new pair even if saving it fails.
            self._pair = new
            self._unsaved = new
            self.refresh_count += 1
            self._save_unsaved()
            return new.access_token

    # -- internals ---------------------------------------------------------------------------------------------

    def _ensure_loaded(self, force: bool = False) -> None:
        """Adopt the saved pair (first use, or before refreshing) if it differs from ours. Caller holds the lock."""
        if self.load is None or (self._loaded and not force) or self._unsaved is not None:
            return
        try:
            saved = self.load()
        except Exception:
            log.exception("loading the saved Zalo OA token pair failed; using the one in memory")
            return
        self._loaded = True
        if saved is not None and (self._pair is None or saved.access_token != self._pair.access_token):
            self._pair = saved

    def _save_unsaved(self) -> None:
        """Persist a refreshed pair not yet saved. Caller holds the lock.

        Raises:
            TokenPersistError: The callback failed; the pair stays pending.
        """
        pending = self._unsaved
        if pending is None:
            return
        if self.persist is None:
            log.error(
                "Zalo OA refresh token rotated but no persist callback is configured: "
                "after a restart the configured refresh token will be rejected"
            )
        else:
            try:
                self.persist(pending)
            except Exception as exc:
                log.exception("saving the rotated Zalo OA token pair failed; will retry before using it")
                raise TokenPersistError(
                    f"could not save the rotated Zalo OA tokens: {type(exc).__name__}",
                    retryable=True,
                    code="token_persist_failed",
                ) from exc
        self._unsaved = None

    def _require_pair(self) -> TokenPair:
        """Return the current pair. Caller holds the lock.

        Raises:
            TokenError: There is none.
        """
        if self._pair is None or not self._pair.access_token:
            raise TokenError("no Zalo OA access token configured", retryable=False, code="no_access_token")
        return self._pair

    def _expiring(self, pair: TokenPair) -> bool:
        """Whether ``pair`` expires within the refresh margin (and can be refreshed)."""
        if pair.access_expires_at is None or not pair.refresh_token or not self.app_secret:
            return False
        return self.clock() >= pair.access_expires_at - self.refresh_margin

    def _call_oauth(self, refresh_token: str) -> TokenPair:
        """POST the refresh grant and return the new pair.

        Raises:
            TokenRefreshError: Retryable for network/429/5xx, not retryable when Zalo rejects the grant.
        """
        try:
            response = self.session.post(
                self.oauth_url,
                data={"app_id": self.app_id, "grant_type": "refresh_token", "refresh_token": refresh_token},
                headers={"secret_key": self.app_secret or ""},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            # If Zalo processed the grant before the connection dropped, the refresh token is spent and only a
            # re-consent recovers; nothing on this side can tell, so this is reported as temporary.
            raise TokenRefreshError(
                f"Zalo OAuth unreachable: {type(exc).__name__}", retryable=True, code="token_refresh_network"
            ) from None
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if response.status_code == 429 or response.status_code >= 500:
            raise TokenRefreshError(
                f"Zalo OAuth HTTP {response.status_code}",
                retryable=True,
                code=f"token_refresh_http_{response.status_code}",
            )
        if not isinstance(body, dict) or not body.get("access_token"):
            detail = ""
            code = f"http_{response.status_code}"
            if isinstance(body, dict):
                # Log the whole error (channels.md §1.7) but never a token: error bodies carry none.
                detail = " ".join(
                    str(body[k])
                    for k in ("error", "error_name", "error_reason", "error_description", "message")
                    if body.get(k)
                )
                code = str(body.get("error") or code)
            log.error("Zalo OA token refresh rejected: HTTP %s %s", response.status_code, detail)
            raise TokenRefreshError(
                f"Zalo OAuth refused the refresh ({detail or 'no detail'}); the OA admin must re-consent",
                retryable=False,
                code=f"token_refresh_rejected:{code}",
            )
        now = self.clock()
        expires_at: dt.datetime | None = None
        try:
            # ``expires_in`` is a string of seconds ("90000").
            expires_at = now + dt.timedelta(seconds=int(str(body.get("expires_in"))))
        except (TypeError, ValueError):
            expires_at = None
        old = self._pair or TokenPair("")
        return replace(
            old,
            access_token=str(body["access_token"]),
            # Zalo always rotates; if a response ever lacks one, the old token is the best we have.
            refresh_token=str(body.get("refresh_token") or refresh_token),
            access_expires_at=expires_at,
            rotated_at=now,
        )
