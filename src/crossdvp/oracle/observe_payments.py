"""Observe the payment ledger: its `hold_placed` events and its final-time watermark (an `Observer`).

The ledger's event feed (GET /v1/events, oracle role) is ordered by an increasing cursor and long-polls
until there is something to say. Each answer carries `now_s`, a watermark: no event stamped at or before
it can be committed later (DESIGN.md "Time is the ledger's"). A hold is final the moment the ledger
commits it, so every `hold_placed` event is a final lock; settle/release/reclaim events are the ledger
executing reports and are not needed to decide.

A page cut short by `limit` is not a watermark for the events beyond it: those may carry the same
time as the last one returned. The ledger lowers `now_s` for such a page itself; the observer does not
rely on that and also keeps the watermark below the last event's time when the page is cut (`has_more`,
or a full page if the ledger does not say), since ledger times never decrease along the feed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import httpx

from crossdvp.errors import ConfigError
from crossdvp.oracle._ledger_http import LedgerHttp, ledger_network
from crossdvp.oracle.errors import LedgerUnavailable
from crossdvp.oracle.ports import Observed
from crossdvp.settlement.decision import LockObservation
from crossdvp.settlement.errors import InvalidObservation

__all__ = ["PaymentsObserver"]

logger = logging.getLogger(__name__)

_BYTES32 = re.compile(r"^0x[0-9a-fA-F]{64}$")
_HOLD_PLACED = "hold_placed"


def _field(source: Mapping[str, Any], name: str, kind: type, cursor: object) -> Any:
    value = source.get(name)
    # bool is an int subclass; a JSON true is never an amount
    if not isinstance(value, kind) or isinstance(value, bool):
        raise LedgerUnavailable(f"feed event {cursor}: field {name!r} is {value!r}, expected {kind.__name__}")
    return value


def _bytes32(source: Mapping[str, Any], name: str, cursor: object) -> bytes:
    value = _field(source, name, str, cursor)
    if not _BYTES32.match(value):
        raise LedgerUnavailable(
            f"feed event {cursor}: field {name!r} is {value!r}, expected 0x + 64 hex digits"
        )
    return bytes.fromhex(value[2:])


class PaymentsObserver:
    """Long-polls one payment ledger's event feed with the oracle API key.

    The network id is the ledger's ("payments:<ledger_id>" from GET /v1/info). Give it as `network`
    (it is then checked against the ledger on the first poll) or build with `await PaymentsObserver.connect`.
    `wait_s` is how long the ledger may hold a poll open when there is nothing new.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        network: str,
        wait_s: int = 5,
        limit: int = 500,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not network.startswith("payments:"):
            raise ConfigError(f"a payment ledger's network id is 'payments:<ledger_id>', got {network!r}")
        if wait_s < 0 or limit < 1:
            raise ConfigError(f"wait_s must be >= 0 and limit >= 1, got wait_s={wait_s} limit={limit}")
        self.wait_s = wait_s
        self.limit = limit
        self._network = network
        self._http = LedgerHttp(base_url, api_key, timeout_s=timeout_s, transport=transport)
        self._network_checked = False

    @classmethod
    async def connect(
        cls,
        base_url: str,
        api_key: str,
        *,
        wait_s: int = 5,
        limit: int = 500,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> PaymentsObserver:
        """An observer for the ledger at `base_url`, its network id read from GET /v1/info.

        Raises LedgerUnavailable (retryable) if the ledger cannot be reached.
        """
        probe = LedgerHttp(base_url, api_key, timeout_s=timeout_s, transport=transport)
        try:
            network = await _fetch_network(probe)
        finally:
            await probe.aclose()
        observer = cls(
            base_url,
            api_key,
            network=network,
            wait_s=wait_s,
            limit=limit,
            timeout_s=timeout_s,
            transport=transport,
        )
        observer._network_checked = True
        return observer

    @property
    def network(self) -> str:
        return self._network

    async def aclose(self) -> None:
        await self._http.aclose()

    async def poll(self, cursor: str | None) -> Observed:
        """Every hold placed after `cursor`, the ledger's watermark and the next cursor.

        Raises: LedgerUnavailable (retryable) on transport errors, timeouts, 5xx or a malformed answer;
        LedgerAccessDenied if the API key is refused; ConfigError if the ledger is not `network`.
        """
        if not self._network_checked:
            served = await _fetch_network(self._http)
            if served != self._network:
                raise ConfigError(
                    f"{self._http.base_url} is ledger {served!r}, configured as {self._network!r}"
                )
            self._network_checked = True
        params: dict[str, str | int] = {"limit": self.limit, "wait_s": self.wait_s}
        if cursor is not None:
            params["after"] = cursor
        status, body = await self._http.request(
            "GET", "/v1/events", params=params, timeout_s=self._http.timeout_s + self.wait_s
        )
        if status != 200 or not isinstance(body, Mapping):
            raise LedgerUnavailable(f"GET /v1/events answered HTTP {status}: {body!r:.200}")
        events = body.get("events")
        now_s = body.get("now_s")
        if not isinstance(events, list) or not isinstance(now_s, int) or isinstance(now_s, bool):
            raise LedgerUnavailable(
                f"GET /v1/events: expected 'events' (list) and 'now_s' (int), got {body!r:.200}"
            )

        locks: list[LockObservation] = []
        last_time_s: int | None = None
        for event in events:
            if not isinstance(event, Mapping):
                raise LedgerUnavailable(f"GET /v1/events: an event is not an object: {event!r:.200}")
            event_cursor = event.get("cursor")
            last_time_s = _field(event, "time_s", int, event_cursor)
            if event.get("kind") == _HOLD_PLACED:
                locks.append(self._lock(event, event_cursor))

        next_cursor = body.get("next_cursor")
        if next_cursor is None:
            if events:
                raise LedgerUnavailable("GET /v1/events returned events but no next_cursor")
            # Nothing new: keep the cursor ("0" is before the first event; feed cursors start at 1).
            next_cursor = cursor if cursor is not None else "0"
        has_more = body.get("has_more")
        truncated = has_more if isinstance(has_more, bool) else len(events) >= self.limit
        final_time_s = now_s
        if truncated and last_time_s is not None:
            final_time_s = min(now_s, last_time_s - 1)
        return Observed(self._network, tuple(locks), final_time_s, str(next_cursor))

    def _lock(self, event: Mapping[str, Any], cursor: object) -> LockObservation:
        # The hold's fields travel either flat on the event or under "hold"; accept both.
        hold = event.get("hold")
        source: Mapping[str, Any] = hold if isinstance(hold, Mapping) else event
        try:
            return LockObservation(
                network=self._network,
                leg_index=_field(source, "leg_index", int, cursor),
                settlement_id=_bytes32(source, "settlement_id", cursor),
                terms_hash=_bytes32(source, "terms_hash", cursor),
                asset=_field(source, "currency", str, cursor),
                amount_minor=_field(source, "amount_minor", int, cursor),
                payer=_field(source, "payer_account", str, cursor),
                payee=_field(source, "payee_account", str, cursor),
                deadline_s=_field(source, "deadline_s", int, cursor),
                locked_at_s=_field(event, "time_s", int, cursor),
            )
        except InvalidObservation as exc:
            raise LedgerUnavailable(f"feed event {cursor} is not a valid lock: {exc}") from exc


async def _fetch_network(http: LedgerHttp) -> str:
    status, body = await http.request("GET", "/v1/info")
    if status != 200:
        raise LedgerUnavailable(f"GET /v1/info answered HTTP {status}: {body!r:.200}")
    return ledger_network(body)
