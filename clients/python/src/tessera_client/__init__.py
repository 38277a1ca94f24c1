"""Tessera's Python client: ``from tessera_client import ClientCredentials, Verifier``."""
from ._http import RetryPolicy
from .accounts import Account, AccountStore, delete_account, list_accounts, load_account, save_account
from .branding import DEFAULT_BRANDING, Branding
from .client_credentials import AccessToken, ClientCredentials, ClientCredentialsAuth, HttpxAuth
from .credentials import SdkCredentials, read_key_file, resolve_credentials
from .errors import (
    PERMANENT_OAUTH_ERRORS,
    TesseraConfigError,
    TesseraError,
    TesseraNetworkError,
    TesseraOAuthError,
    TesseraVerifyError,
)
from .pop import JWT_BEARER_ASSERTION, DpopKey, PrivateKeyJwt
from .revocations import RevocationStream
from .token_login import Session, TokenLogin
from .verifier import (
    DPOP_PROOF_ALGORITHMS,
    TESSERA_ALGORITHMS,
    ASGIMiddleware,
    DpopRequest,
    ProofReplayStore,
    VerifiedToken,
    Verifier,
    WSGIMiddleware,
    extract_token,
    redis_proof_replay_store,
)

__version__ = "0.1.0"

__all__ = [
    "DPOP_PROOF_ALGORITHMS",
    "DpopRequest",
    "DpopKey",
    "JWT_BEARER_ASSERTION",
    "PrivateKeyJwt",
    "AccessToken",
    "Account",
    "AccountStore",
    "ASGIMiddleware",
    "Branding",
    "ClientCredentials",
    "ClientCredentialsAuth",
    "DEFAULT_BRANDING",
    "HttpxAuth",
    "PERMANENT_OAUTH_ERRORS",
    "RetryPolicy",
    "RevocationStream",
    "SdkCredentials",
    "Session",
    "TESSERA_ALGORITHMS",
    "TesseraConfigError",
    "TesseraError",
    "TesseraNetworkError",
    "TesseraOAuthError",
    "TesseraVerifyError",
    "TokenLogin",
    "VerifiedToken",
    "Verifier",
    "ProofReplayStore",
    "redis_proof_replay_store",
    "WSGIMiddleware",
    "delete_account",
    "extract_token",
    "list_accounts",
    "load_account",
    "read_key_file",
    "resolve_credentials",
    "save_account",
]
