"""Where the console's facts come from: ports (Protocols) and their real implementations.

- `HttpNodeSource`: each node's GET /health (short timeout, so a killed node shows as down within a
  poll), GET /metrics and GET /v1/settlements[/{id}].
- `EvmChainSource`: the escrow's events and the fund token's Transfer events, indexed incrementally
  from the deployment block (one eth_getLogs per kind per refresh), plus totalSupply and decimals.
- `LedgerHttpSource`: the ledger's /v1/info, /v1/holds and /v1/accounts, read with GET only.

Unit tests replace these with in-memory fakes of the same Protocols.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

import httpx
from prometheus_client.parser import text_string_to_metric_families

from crossdvp.chain.client import EvmClient, LogEntry
from crossdvp.chain.contracts import DvPEscrow, FundToken
from crossdvp.console.config import ChainEndpoint, LedgerEndpoint, NodeEndpoint
from crossdvp.console.facts import (
    AccountFact,
    ChainFacts,
    ChainLegEvent,
    HoldFact,
    LedgerFacts,
    MetricSample,
    NodeProbe,
    TokenInfo,
)
from crossdvp.errors import CrossDvpError

__all__ = [
    "ChainSource",
    "EvmChainSource",
    "HttpNodeSource",
    "LedgerHttpSource",
    "LedgerSource",
    "NodeSource",
    "parse_metrics",
]

ZERO_ADDRESS = "0x" + "00" * 20
_SCAN_CHUNK_BLOCKS = 5_000


class NodeSource(Protocol):
    async def probe(self, node: NodeEndpoint) -> NodeProbe: ...

    async def settlement(self, node: NodeEndpoint, settlement_id: str) -> Mapping[str, Any] | None: ...


class ChainSource(Protocol):
    async def facts(self) -> ChainFacts: ...


class LedgerSource(Protocol):
    async def facts(self) -> LedgerFacts: ...


def parse_metrics(text: str) -> tuple[MetricSample, ...]:
    """Prometheus text format to samples. Raises ValueError on text that is not in that format."""
    return tuple(
        MetricSample(sample.name, tuple(sorted(sample.labels.items())), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    )


def _describe(exc: Exception) -> str:
    """A one-line reason for an unreachable source (never the request headers)."""
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused" if "refused" in str(exc).lower() else "cannot connect"
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return f"{type(exc).__name__}: {exc}"


class HttpNodeSource:
    """Reads the nodes' public HTTP API. `health_timeout_s` bounds how long a dead node can delay a
    page, and so how quickly it shows as down."""

    def __init__(
        self,
        *,
        health_timeout_s: float = 1.0,
        timeout_s: float = 3.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._health_timeout_s = health_timeout_s
        self._http = httpx.AsyncClient(timeout=timeout_s, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _json(self, url: str, *, timeout_s: float | None = None, **params: Any) -> Any:
        response = await self._http.get(
            url, params=params, timeout=timeout_s if timeout_s is not None else httpx.USE_CLIENT_DEFAULT
        )
        response.raise_for_status()
        return response.json()

    async def probe(self, node: NodeEndpoint) -> NodeProbe:
        base = node.url.rstrip("/")
        started_ms = int(time.time() * 1000)
        try:
            health = await self._json(f"{base}/health", timeout_s=self._health_timeout_s)
        except (httpx.HTTPError, ValueError) as exc:
            return NodeProbe(endpoint=node, up=False, probed_at_ms=started_ms, error=_describe(exc))
        (metrics, metrics_error), (settlements, list_error) = await asyncio.gather(
            self._metrics(base), self._settlements(base)
        )
        errors = [e for e in (metrics_error, list_error) if e]
        return NodeProbe(
            endpoint=node,
            up=True,
            probed_at_ms=started_ms,
            error="; ".join(errors) or None,
            health=health,
            metrics=metrics,
            settlements=settlements,
        )

    async def _metrics(self, base: str) -> tuple[tuple[MetricSample, ...], str | None]:
        try:
            response = await self._http.get(f"{base}/metrics")
            response.raise_for_status()
            return parse_metrics(response.text), None
        except (httpx.HTTPError, ValueError) as exc:
            return (), f"metrics: {_describe(exc)}"

    async def _settlements(self, base: str) -> tuple[tuple[Mapping[str, Any], ...], str | None]:
        try:
            answer = await self._json(f"{base}/v1/settlements", limit=1000)
            return tuple(answer["settlements"]), None
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            return (), f"settlements: {_describe(exc)}"

    async def settlement(self, node: NodeEndpoint, settlement_id: str) -> Mapping[str, Any] | None:
        """The node's view of one settlement; None if the node does not know it or cannot be reached."""
        try:
            answer: Mapping[str, Any] = await self._json(
                f"{node.url.rstrip('/')}/v1/settlements/{settlement_id}", timeout_s=self._health_timeout_s * 2
            )
        except (httpx.HTTPError, ValueError):
            return None
        return answer


class LedgerHttpSource:
    """The payment ledger's balances and holds. Only GET requests are ever sent with the key."""

    def __init__(
        self,
        endpoint: LedgerEndpoint,
        *,
        timeout_s: float = 3.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._http = httpx.AsyncClient(
            base_url=endpoint.url,
            headers={"Authorization": f"Bearer {endpoint.api_key.reveal()}"},
            timeout=timeout_s,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _get(self, path: str, **params: Any) -> Any:
        response = await self._http.get(path, params={k: v for k, v in params.items() if v is not None})
        response.raise_for_status()
        return response.json()

    async def _pages(self, path: str) -> list[Mapping[str, Any]]:
        items: list[Mapping[str, Any]] = []
        after: str | None = None
        while True:
            page = await self._get(path, limit=1000, after=after)
            items.extend(page["items"])
            after = page.get("next_after")
            if not after:
                return items

    async def facts(self) -> LedgerFacts:
        network = self._endpoint.network
        try:
            info, holds, accounts = await asyncio.gather(
                self._get("/v1/info"), self._pages("/v1/holds"), self._pages("/v1/accounts")
            )
            return LedgerFacts(
                network=network,
                ok=True,
                time_s=int(info["time_s"]),
                holds=tuple(HoldFact.from_json(h) for h in holds),
                accounts=tuple(AccountFact.from_json(a) for a in accounts),
            )
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            return LedgerFacts(network=network, ok=False, error=_describe(exc))


_ESCROW_KINDS = {
    "LockedEvent": "locked",
    "SettledEvent": "settled",
    "AbortedEvent": "aborted",
    "OwedEvent": "owed",
    "ClaimedEvent": "claimed",
    "ReclaimedEvent": "reclaimed",
    "ItemSkippedEvent": "skipped",
}


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def _leg_event(event: Any, block_time_s: int | None) -> ChainLegEvent:
    """Our record of a crossdvp.chain escrow event dataclass."""
    kind = _ESCROW_KINDS[type(event).__name__]
    # The locker for Locked/Aborted/Reclaimed, the payee for Settled, the beneficiary for Owed/Claimed.
    party = (
        getattr(event, "locker", None) or getattr(event, "payee", None) or getattr(event, "beneficiary", None)
    )
    terms_hash = getattr(event, "terms_hash", None)
    return ChainLegEvent(
        kind=kind,
        settlement_id=_hex(event.settlement_id),
        leg_index=getattr(event, "leg_index", None),
        tx_hash=_hex(event.tx_hash),
        block_number=event.block_number,
        log_index=event.log_index,
        block_time_s=block_time_s,
        amount=getattr(event, "amount", None),
        party=None if party is None else str(party).lower(),
        payee=str(event.payee).lower() if kind == "locked" else None,
        token=str(event.token).lower() if kind == "locked" else None,
        terms_hash=None if terms_hash is None else _hex(terms_hash),
        deadline_s=getattr(event, "deadline", None),
        detail=f"reason {event.reason.name.lower()}" if kind == "skipped" else "",
    )


class EvmChainSource:
    """Indexes the escrow's and the token's events incrementally; every refresh reads only new blocks.

    The index is rebuilt from the deployment block if the last indexed block's hash changes (a reorg).
    Calls are blocking (EvmClient) and run in a worker thread, one refresh at a time.
    """

    def __init__(
        self, endpoint: ChainEndpoint, *, timeout_s: float = 3.0, client: EvmClient | None = None
    ) -> None:
        self._endpoint = endpoint
        self._client = client or EvmClient(endpoint.rpc_url, timeout_s=timeout_s)
        self._escrow = DvPEscrow(self._client, endpoint.asset.escrow)
        self._token = FundToken(self._client, endpoint.asset.token)
        self._transfer = self._token.abi.event("Transfer")
        self._lock = threading.Lock()
        self._meta: tuple[str, str, int] | None = None
        self._reset()

    def _reset(self) -> None:
        self._next_block = self._endpoint.asset.deployed_at_block
        self._last: tuple[int, bytes] | None = None
        self._events: list[ChainLegEvent] = []
        self._balances: dict[str, int] = {}
        self._block_times: dict[int, int] = {}

    async def facts(self) -> ChainFacts:
        return await asyncio.to_thread(self._refresh)

    def _block_time(self, number: int) -> int:
        if number not in self._block_times:
            self._block_times[number] = self._client.get_block(number).timestamp
        return self._block_times[number]

    def _apply_transfer(self, log: LogEntry) -> None:
        args = self._transfer.decode(log.topics, log.data)
        value = int(args["value"])
        source, target = str(args["from"]).lower(), str(args["to"]).lower()
        if source != ZERO_ADDRESS:
            self._balances[source] = self._balances.get(source, 0) - value
        if target != ZERO_ADDRESS:
            self._balances[target] = self._balances.get(target, 0) + value

    def _catch_up(self, head: int) -> None:
        last = self._last
        if last is not None and (last[0] > head or self._client.get_block(last[0]).hash != last[1]):
            self._reset()  # the chain no longer holds the last block indexed: a reorg (or a reverted anvil)
        while self._next_block <= head:
            end = min(head, self._next_block + _SCAN_CHUNK_BLOCKS - 1)
            for event in self._escrow.all_events(self._next_block, end):
                if type(event).__name__ in _ESCROW_KINDS:  # a DecisionPending moves no leg
                    self._events.append(_leg_event(event, self._block_time(event.block_number)))
            for log in self._client.get_logs(
                self._token.address, [self._transfer.topic0], self._next_block, end
            ):
                if not log.removed:
                    self._apply_transfer(log)
            self._next_block = end + 1
        if head >= self._endpoint.asset.deployed_at_block:
            self._last = (head, self._client.get_block(head).hash)

    def _refresh(self) -> ChainFacts:
        network = self._endpoint.network
        with self._lock:
            try:
                head = self._client.latest_block()
                self._catch_up(head.number)
                if self._meta is None:
                    self._meta = (self._token.name(), self._token.symbol(), self._token.decimals())
                name, symbol, decimals = self._meta
                token = TokenInfo(
                    address=self._token.address,
                    name=name,
                    symbol=symbol,
                    decimals=decimals,
                    total_supply=self._token.total_supply(),
                )
            except CrossDvpError as exc:
                # Keep what was indexed: the page shows it with the error, rather than nothing.
                return ChainFacts(
                    network=network,
                    ok=False,
                    error=str(exc),
                    escrow=self._escrow.address,
                    events=tuple(self._events),
                    holders=self._holders(),
                )
            return ChainFacts(
                network=network,
                ok=True,
                head_block=head.number,
                head_time_s=head.timestamp,
                token=token,
                escrow=self._escrow.address,
                events=tuple(self._events),
                holders=self._holders(),
            )

    def _holders(self) -> tuple[tuple[str, int], ...]:
        return tuple(sorted(((a, b) for a, b in self._balances.items() if b != 0), key=lambda item: -item[1]))
