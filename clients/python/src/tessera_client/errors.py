"""Typed errors raised by the Tessera client (the same names as the TypeScript client's)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

#: OAuth error codes that a retry cannot fix: raised at once.
PERMANENT_OAUTH_ERRORS: Tuple[str, ...] = (
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "invalid_scope",
    "invalid_request",
    "unsupported_grant_type",
    "invalid_target",
)


class TesseraError(Exception):
    """Base class of every error the Tessera client raises."""


class TesseraConfigError(TesseraError):
    """Missing or unusable client configuration: no credentials, unreadable key file or accounts file,
    unknown account, an issuer that is not a Tessera. The message names the file or variable and the fix."""


class TesseraOAuthError(TesseraError):
    """An error answer from Tessera: an RFC 6749 section 5.2 body (``error``, ``error_description``) on the
    OAuth endpoints, or ``{error, message}`` on the API. ``code`` is the ``error`` member."""

    def __init__(self, code: str, status: int, description: Optional[str], retryable: bool) -> None:
        self.code = code
        self.status = status
        self.description = description
        #: True when the request was (or could have been) retried: 5xx, 429, temporarily_unavailable.
        self.retryable = retryable
        super().__init__(f"{code}: {description}" if description else f"{code} (HTTP {status})")


class TesseraNetworkError(TesseraError):
    """Tessera could not be reached (connection refused, reset, DNS, timeout), after the retries."""


class TesseraVerifyError(TesseraError):
    """A token the verifier refused. ``code`` is the RFC 6750 error: ``invalid_token`` (401),
    ``insufficient_scope`` (403), or ``temporarily_unavailable`` (503: a required remote check could not be
    made). ``reason`` says why, for logs (the answer to the caller is the same for all)."""

    def __init__(self, code: str, reason: str, message: str, scopes: Sequence[str] = ()) -> None:
        self.code = code
        self.reason = reason
        self.scopes = list(scopes)
        self.status = 401 if code == "invalid_token" else 403 if code == "insufficient_scope" else 503
        super().__init__(message)
