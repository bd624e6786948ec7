"""The HTTP side of talking to the payments ledger, shared by its observer and its deliverer.

One place maps transport outcomes onto the node's errors, so both adapters retry the same things:

    timeout, connection error, HTTP 5xx/429, non-JSON body  -> LedgerUnavailable (retryable)
    HTTP 401/403                                           -> LedgerAccessDenied (fix the API key)
    any other status                                       -> returned to the caller, who knows what it means
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from crossdvp.errors import ConfigError
from crossdvp.oracle.errors import LedgerAccessDenied, LedgerUnavailable

__all__ = ["LedgerHttp", "ledger_network"]


def ledger_network(info: object) -> str:
    """The network id ("payments:<ledger_id>") of a GET /v1/info body.

    Raises LedgerUnavailable if the body names neither `network` nor `ledger_id`.
    """
    if isinstance(info, Mapping):
        network = info.get("network")
        if isinstance(network, str) and network.startswith("payments:") and len(network) > len("payments:"):
            return network
        ledger_id = info.get("ledger_id")
        if isinstance(ledger_id, str) and ledger_id:
            return f"payments:{ledger_id}"
    raise LedgerUnavailable(f"GET /v1/info did not name the ledger's network: {info!r:.200}")


class LedgerHttp:
    """An authenticated async HTTP client for one payments service (base URL + oracle API key)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"payments base URL must start with http:// or https://, got {base_url!r}")
        if not api_key:
            raise ConfigError("the payments API key is empty; configure the oracle credential")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                headers=self._headers,
                timeout=self.timeout_s,
                transport=self._transport,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: object = None,
        timeout_s: float | None = None,
    ) -> tuple[int, Any]:
        """(status code, decoded JSON body or None). Raises per the module docstring."""
        what = f"{method} {self.base_url}{path}"
        try:
            response = await self._http().request(
                method,
                path,
                params=params,
                json=json,
                timeout=timeout_s if timeout_s is not None else self.timeout_s,
            )
        except httpx.TimeoutException as exc:
            raise LedgerUnavailable(f"{what} timed out") from exc
        except httpx.HTTPError as exc:
            raise LedgerUnavailable(f"{what} failed: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status in (401, 403):
            raise LedgerAccessDenied(
                f"{what} answered HTTP {status}: the ledger refuses the node's API key; "
                "check the oracle credential in the node config"
            )
        if status >= 500 or status == 429:
            raise LedgerUnavailable(f"{what} answered HTTP {status}: {response.text[:200]}")
        if not response.content:
            return status, None
        try:
            return status, response.json()
        except ValueError:
            if status < 300:
                raise LedgerUnavailable(f"{what} answered non-JSON: {response.text[:200]}") from None
            return status, response.text[:500]
