"""Deliver a signed report to the payment ledger: POST /v1/reports (a `Deliverer`).

The ledger verifies the same f+1 signatures the forwarder does, against the DON config it was given,
applies each item to its holds, and stores the report under its workflow_execution_id. Applying the
same report twice changes nothing, and GET /v1/reports/{execution_id} serves what was applied, so
delivery is idempotent and confirmable by anyone (DESIGN.md "Execute"):

    GET  /v1/reports/{id} 200 -> DELIVERED (reference: the execution id)      404 -> NOT_DELIVERED
    POST /v1/reports      2xx -> re-read status (delivery is confirmed by reading the outcome)
                          409 -> already applied: re-read status
                          other 4xx -> FAILED: the ledger refuses the report for good (signatures,
                                       unknown DON config); the detail carries the ledger's message
    transport errors, timeouts, 5xx -> LedgerUnavailable (retryable)
"""

from __future__ import annotations

import logging

import httpx

from crossdvp.errors import ConfigError
from crossdvp.oracle._ledger_http import LedgerHttp
from crossdvp.oracle.errors import LedgerUnavailable
from crossdvp.oracle.ports import DeliveryState, DeliveryStatus, SignedReport

__all__ = ["PaymentsDeliverer"]

logger = logging.getLogger(__name__)


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


class PaymentsDeliverer:
    """Delivers reports to one payment ledger with the oracle API key."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        network: str,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not network.startswith("payments:"):
            raise ConfigError(f"a payment ledger's network id is 'payments:<ledger_id>', got {network!r}")
        self._network = network
        self._http = LedgerHttp(base_url, api_key, timeout_s=timeout_s, transport=transport)

    @property
    def network(self) -> str:
        return self._network

    async def aclose(self) -> None:
        await self._http.aclose()

    async def status(self, report: SignedReport) -> DeliveryStatus:
        """Whether the ledger has applied this report (by anyone's delivery).

        Raises LedgerUnavailable (retryable) on transport errors, timeouts, 5xx or an unexpected answer;
        LedgerAccessDenied if the API key is refused.
        """
        execution_id = _hex(report.workflow_execution_id)
        status, body = await self._http.request("GET", f"/v1/reports/{execution_id}")
        if status == 200:
            return DeliveryStatus(self._network, DeliveryState.DELIVERED, execution_id)
        if status == 404:
            return DeliveryStatus(self._network, DeliveryState.NOT_DELIVERED)
        raise LedgerUnavailable(f"GET /v1/reports/{execution_id} answered HTTP {status}: {body!r:.200}")

    async def deliver(self, report: SignedReport) -> DeliveryStatus:
        """POST the report, then confirm by reading it back; safe to call repeatedly.

        Returns FAILED (with the ledger's reason in `detail`) when the ledger refuses the report with
        a 4xx other than 409. Raises as `status` does.
        """
        body = {
            "report": _hex(report.raw),
            "context": _hex(report.context),
            "signatures": [_hex(s) for s in report.signatures],
        }
        status, answer = await self._http.request("POST", "/v1/reports", json=body)
        execution_id = _hex(report.workflow_execution_id)
        if status < 300 or status == 409:
            confirmed = await self.status(report)
            if confirmed.state == DeliveryState.NOT_DELIVERED:
                # Accepted but not readable yet would break the ledger's contract; say so and retry.
                raise LedgerUnavailable(
                    f"the ledger accepted report {execution_id} but does not serve it yet"
                )
            return confirmed
        detail = f"the ledger refuses report {execution_id}: HTTP {status}: {answer!r:.300}"
        logger.error(detail, extra={"network": self._network})
        return DeliveryStatus(self._network, DeliveryState.FAILED, None, detail)
