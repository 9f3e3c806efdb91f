"""Bearer keys: DOMAINBOT_API_KEY for the API, DOMAINBOT_ADMIN_KEY (which also opens the API) for /v1/kb.

Keys are compared in constant time, as bytes, and never appear in a response or a log line.
"""

from __future__ import annotations

import hmac

from fastapi.security import HTTPBearer
from pydantic import SecretStr

from bot.http.errors import ApiError

# Declares the scheme in the OpenAPI schema; the checks below decide, so a missing header is not an automatic 403.
bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>`")
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _matches(given: str, key: SecretStr) -> bool:
    return hmac.compare_digest(given.encode(), key.get_secret_value().encode())


def check_api_key(given: str | None, api_key: SecretStr | None, admin_key: SecretStr | None) -> None:
    """Pass if no API key is configured, or `given` is the API key or the admin key; else 401."""
    if api_key is None:
        return
    if not given:
        raise ApiError(401, "Missing API key. Send `Authorization: Bearer <key>`.", headers=CHALLENGE)
    # Both comparisons always run, so the time taken does not tell which key came close.
    valid = _matches(given, api_key) | (admin_key is not None and _matches(given, admin_key))
    if not valid:
        raise ApiError(401, "Invalid API key.", headers=CHALLENGE)


def check_admin_key(given: str | None, admin_key: SecretStr | None) -> None:
    """Pass only with the admin key; with none configured the admin endpoints are off (403)."""
    if admin_key is None:
        raise ApiError(
            403, "The knowledge-base endpoints are off: the server has no admin key. Set DOMAINBOT_ADMIN_KEY."
        )
    if not given:
        raise ApiError(401, "Missing admin key. Send `Authorization: Bearer <admin key>`.", headers=CHALLENGE)
    if not _matches(given, admin_key):
        raise ApiError(401, "Invalid admin key.", headers=CHALLENGE)
