"""The OAuth token of a ServiceNow user: password grant against ``/oauth_token.do``, refreshed shortly
before it expires, logged in again when the refresh token is refused.

Used by :class:`connector.servicenow.client.ServiceNowSource`, which puts :meth:`OAuthToken.header`
on its session before each request and calls :meth:`OAuthToken.forget` when a request's token is
rejected. A grant the server refuses (400, 401, 403) is a :class:`SourceAuthError`; anything else
is classified as :mod:`connector.servicenow.classify` says. Every message goes through ``redact`` first:
:meth:`OAuthToken.secrets` lists what it must hide besides the password.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests

from connector.errors import SourceAuthError, SourceBadResponse, SourceError
from connector.servicenow.classify import TRANSPORT_ERRORS, bad_body, error_text, transport_error


class OAuthToken:
    """OAuth password grant against ``/oauth_token.do``, refreshed shortly before the token expires."""

    def __init__(
        self,
        *,
        session: requests.Session,
        base_url: str,
        username: str,
        password: str,
        client_id: str,
        client_secret: str,
        timeout: float,
        redact: Callable[[str], str],
        error_for: Callable[[requests.Response, str], SourceError],
    ) -> None:
        self._session, self._base_url, self._timeout = session, base_url, timeout
        self._username, self._password = username, password
        self._client_id, self._client_secret = client_id, client_secret
        self._redact, self._error_for = redact, error_for
        self._access: str | None = None
        self._refresh: str | None = None
        self._expires_at = 0.0

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self._client_secret, self._access, self._refresh) if s)

    def forget(self) -> None:
        self._access = None

    def header(self) -> str:
        if self._access is None or time.monotonic() >= self._expires_at - 60:
            token = None
            if self._refresh is not None:
                try:
                    token = self._grant({"grant_type": "refresh_token", "refresh_token": self._refresh})
                except SourceAuthError:
                    token = None  # refresh token expired or revoked: log in again
            if token is None:
                login = {
                    "grant_type": "password",
                    "username": self._username,
                    "password": self._password,
                }
                token = self._grant(login)
            self._access = str(token["access_token"])
            self._refresh = str(token.get("refresh_token") or "") or None
            self._expires_at = time.monotonic() + float(token.get("expires_in") or 1800)
        return f"Bearer {self._access}"

    def _grant(self, form: dict[str, str]) -> dict[str, Any]:
        what = f"the OAuth token endpoint of {self._base_url}"
        data = {**form, "client_id": self._client_id, "client_secret": self._client_secret}
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "Authorization": None,
        }  # None: not the session's bearer header
        try:
            resp = self._session.post(
                f"{self._base_url}/oauth_token.do", data=data, headers=headers, timeout=self._timeout
            )
        except TRANSPORT_ERRORS as e:
            raise transport_error(e, what, self._timeout) from e
        if resp.status_code in (400, 401, 403):
            said = error_text(resp) or "no reason given"
            raise SourceAuthError(
                self._redact(
                    f"ServiceNow refused the OAuth {form['grant_type']} grant for user '{self._username}' "
                    f"(HTTP {resp.status_code}: {said}): check servicenow.username / the password, "
                    "servicenow.oauth_client_id and the client secret"
                )
            )
        if resp.status_code != 200:
            raise self._error_for(resp, what)
        try:
            token = resp.json()
        except ValueError:
            raise SourceBadResponse(
                bad_body(resp.headers.get("Content-Type", ""), None, what, self._base_url)
            ) from None
        if not isinstance(token, dict) or not token.get("access_token"):
            raise SourceBadResponse(f"{what} answered without an access_token")
        return token
