"""In-memory twins of the console's sources and a small DvP world to aggregate (no processes)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from crossdvp.chain.deploy import AssetNetwork
from crossdvp.console.config import ChainEndpoint, ConsoleConfig, LedgerEndpoint, NodeEndpoint, Party, Secret
from crossdvp.console.facts import ChainFacts, ChainLegEvent, HoldFact, LedgerFacts, NodeProbe, TokenInfo
from crossdvp.console.sources import parse_metrics
from crossdvp.oracle.metrics import NodeMetrics

TOKEN = "0x" + "a1" * 20
ESCROW = "0x" + "e5" * 20
SELLER = "0x" + "5e" * 20
BUYER = "0x" + "b0" * 20
CHAIN = "eip155:31337"
LEDGER = "payments:crossdvp-payments"
LEDGER_KEY = "cdvp_live_TOPSECRET_ledger_admin_key_0123456789"
SIGNERS = tuple("0x" + f"{i + 1:02x}" * 20 for i in range(4))
SID = "0x" + "11" * 32
TERMS_HASH = "0x" + "22" * 32
DEADLINE = 1_800_000_100
SHARES = 25 * 10**18
CASH = 2_512_345  # USD 25,123.45


def make_config() -> ConsoleConfig:
    return ConsoleConfig(
        nodes=tuple(NodeEndpoint(f"node-{i}", f"http://127.0.0.1:{9000 + i}", SIGNERS[i]) for i in range(4)),
        chain=ChainEndpoint(
            "http://127.0.0.1:8545",
            AssetNetwork(
                chain_id=31337,
                registry="0x" + "c0" * 20,
                token=TOKEN,
                escrow=ESCROW,
                forwarder="0x" + "f0" * 20,
                deployed_at_block=1,
            ),
        ),
        ledger=LedgerEndpoint("http://127.0.0.1:8700", LEDGER, Secret(LEDGER_KEY)),
        f=1,
        parties=(
            Party("seller", "the issuer's treasury", SELLER, ("seller-usd",)),
            Party("buyer", "a bank client", BUYER, ("buyer-usd",)),
        ),
        source="test world",
    )


def terms_view(
    sid: str = SID,
    *,
    status: str = "pending",
    decision: str | None = None,
    signers: tuple[str, ...] = (),
    deliveries: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:
    """A node's GET /v1/settlements/{id} answer (crossdvp.oracle.api.settlement_view's shape)."""
    report = None
    if signers:
        report = {
            "execution_id": "0x" + "33" * 32,
            "raw": "0x00",
            "context": "0x00",
            "signatures": ["0x00"] * len(signers),
            "signers": list(signers),
            "deliveries": [
                {
                    "network": n,
                    "state": s,
                    "reference": "0x" + "44" * 32 if s == "delivered" else None,
                    "detail": None,
                    "attempts": 1,
                }
                for n, s in deliveries
            ],
        }
    return {
        "settlement_id": sid,
        "terms_hash": TERMS_HASH,
        "deadline_s": DEADLINE,
        "status": status,
        "legs": [
            {
                "index": 0,
                "network": CHAIN,
                "asset": TOKEN,
                "amount_minor": SHARES,
                "payer": SELLER,
                "payee": BUYER,
                "locked": False,
            },
            {
                "index": 1,
                "network": LEDGER,
                "asset": "USD",
                "amount_minor": CASH,
                "payer": "buyer-usd",
                "payee": "seller-usd",
                "locked": False,
            },
        ],
        "locks": [],
        "decision": None
        if decision is None
        else {
            "decision": decision,
            "decided_at_s": DEADLINE - 50,
            "reason": "every leg locked" if decision == "SETTLE" else "deadline passed",
        },
        "report": report,
        "reports": [report] if report else [],
    }


def locked_event(*, amount: int = SHARES, sid: str = SID) -> ChainLegEvent:
    return ChainLegEvent(
        kind="locked",
        settlement_id=sid,
        leg_index=0,
        tx_hash="0x" + "aa" * 32,
        block_number=41,
        log_index=0,
        block_time_s=DEADLINE - 60,
        amount=amount,
        party=SELLER,
        payee=BUYER,
        token=TOKEN,
        terms_hash=TERMS_HASH,
        deadline_s=DEADLINE,
    )


def outcome_event(kind: str, party: str, *, sid: str = SID) -> ChainLegEvent:
    return ChainLegEvent(
        kind=kind,
        settlement_id=sid,
        leg_index=0,
        tx_hash="0x" + "bb" * 32,
        block_number=47,
        log_index=1,
        block_time_s=DEADLINE - 40,
        amount=SHARES,
        party=party,
    )


def hold(state: str, *, amount: int = CASH, sid: str = SID) -> HoldFact:
    return HoldFact(
        hold_id=f"hold-{sid[2:]}-1",
        settlement_id=sid,
        leg_index=1,
        terms_hash=TERMS_HASH,
        payer_account="buyer-usd",
        payee_account="seller-usd",
        currency="USD",
        amount_minor=amount,
        deadline_s=DEADLINE,
        state=state,
        placed_at_s=DEADLINE - 55,
        final_at_s=None if state == "held" else DEADLINE - 39,
        workflow_execution_id=None if state == "held" else "0x" + "33" * 32,
    )


def node_metrics_text(rounds: int = 0, signatures: int = 0, errors: int = 0) -> str:
    """Genuine Prometheus text from the node's own metrics class."""
    m = NodeMetrics()
    for _ in range(rounds):
        m.rounds.labels(outcome="complete").inc()
    m.rounds.labels(outcome="idle").inc()
    for _ in range(signatures):
        m.signatures.labels(role="leader").inc()
    for _ in range(errors):
        m.errors.labels(kind="observe_retryable").inc()
    return m.render().decode()


def probe(
    node: NodeEndpoint, views: list[dict[str, Any]], *, up: bool = True, leader: bool = False, rounds: int = 0
) -> NodeProbe:
    if not up:
        return NodeProbe(endpoint=node, up=False, probed_at_ms=DEADLINE * 1000, error="connection refused")
    health = {
        "status": "ok",
        "node": node.name,
        "index": 0,
        "signer": node.signer,
        "is_leader": leader,
        "networks": {
            CHAIN: {
                "cursor": "47:0xabc",
                "final_time_s": DEADLINE - 30,
                "last_poll_ms": DEADLINE * 1000 - 200,
                "consecutive_failures": 0,
                "last_error": None,
                "halted": False,
            },
            LEDGER: {
                "cursor": "12",
                "final_time_s": DEADLINE - 29,
                "last_poll_ms": DEADLINE * 1000 - 100,
                "consecutive_failures": 2,
                "last_error": "timed out",
                "halted": False,
            },
        },
        "deliverers": [CHAIN, LEDGER],
    }
    return NodeProbe(
        endpoint=node,
        up=True,
        probed_at_ms=DEADLINE * 1000,
        health=health,
        metrics=parse_metrics(node_metrics_text(rounds=rounds, signatures=rounds, errors=1)),
        settlements=tuple(views),
    )


def chain_facts(*events: ChainLegEvent) -> ChainFacts:
    supply = 10_000 * 10**18
    return ChainFacts(
        network=CHAIN,
        ok=True,
        head_block=50,
        head_time_s=DEADLINE - 20,
        token=TokenInfo(
            address=TOKEN,
            name="Tokenized Short-Term US Treasury Fund",
            symbol="OUSG",
            decimals=18,
            total_supply=supply,
        ),
        escrow=ESCROW,
        events=tuple(events),
        holders=((SELLER, supply - SHARES), (BUYER, SHARES)),
    )


def ledger_facts(*holds: HoldFact) -> LedgerFacts:
    from crossdvp.console.facts import AccountFact

    return LedgerFacts(
        network=LEDGER,
        ok=True,
        time_s=DEADLINE - 20,
        holds=tuple(holds),
        accounts=(
            AccountFact("buyer-usd", "buyer", "USD", False, 100_000_000 - CASH, 0),
            AccountFact("seller-usd", "seller", "USD", False, CASH, 0),
        ),
    )


@dataclass
class FakeNodes:
    """NodeSource twin: a probe and the settlement views per node name."""

    probes: dict[str, NodeProbe] = field(default_factory=dict)

    async def probe(self, node: NodeEndpoint) -> NodeProbe:
        return replace(self.probes[node.name])

    async def settlement(self, node: NodeEndpoint, settlement_id: str) -> Mapping[str, Any] | None:
        p = self.probes[node.name]
        return next((v for v in p.settlements if v["settlement_id"] == settlement_id), None) if p.up else None


@dataclass
class FakeChain:
    facts_value: ChainFacts

    async def facts(self) -> ChainFacts:
        return self.facts_value


@dataclass
class FakeLedger:
    facts_value: LedgerFacts

    async def facts(self) -> LedgerFacts:
        return self.facts_value
