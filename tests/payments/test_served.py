"""The real `crossdvp payments serve` process, driven by the client: the end-to-end path a node uses,
and the concurrency proof (many threads against one account never overdraw; totals are conserved)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from crossdvp.payments.auth import generate_key
from crossdvp.payments.client import AsyncPaymentsClient, PaymentsApiError, PaymentsClient
from crossdvp.payments.journal import verify_journal
from crossdvp.payments.store import make_engine
from crossdvp.process import free_port, start_process
from crossdvp.settlement.terms import Decision
from tests.payments.signing import DON, signed_report

pytestmark = pytest.mark.integration


@dataclass
class Served:
    base_url: str
    admin: PaymentsClient
    database_url: str


def _ready(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/v1/info", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def served(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    admin_key = generate_key()
    # The end-to-end test runs the root CLI exactly as documented; the others run only the payments
    # group (same command, fewer imports, faster start on a busy machine).
    root = request.node.name.startswith("test_serve_with_the_client")
    command = ["crossdvp.cli", "payments"] if root else ["crossdvp.payments.cli"]
    proc = start_process(
        "payments",
        [
            sys.executable,
            "-m",
            *command,
            "serve",
            "--database-url",
            database_url,
            "--port",
            str(port),
            "--ledger-id",
            "served",
            "--grace-s",
            "5",
        ],
        log_path=tmp_path / "payments.log",
        ready=lambda: _ready(base_url),
        env={"CROSSDVP_PAYMENTS_ADMIN_KEY": admin_key},
        timeout_s=120,
    )
    admin = PaymentsClient(base_url, admin_key)
    try:
        yield Served(base_url, admin, database_url)
    finally:
        admin.close()
        proc.stop()


def _onboard(admin: PaymentsClient, funded: int) -> tuple[str, str]:
    admin.create_participant("alice", "Alice")
    admin.create_participant("bob", "Bob")
    admin.open_account("alice-usd", "alice", "USD")
    admin.open_account("bob-usd", "bob", "USD")
    admin.cash_in("alice-usd", funded)
    alice_key = admin.create_credential("participant", "alice")["api_key"]
    oracle_key = admin.create_credential("oracle")["api_key"]
    return alice_key, oracle_key


def test_serve_with_the_client_end_to_end(served: Served) -> None:
    info = served.admin.info()
    assert info["network"] == "payments:served" and info["grace_s"] == 5
    alice_key, oracle_key = _onboard(served.admin, 1_000)
    served.admin.put_don_config(DON)
    sid, terms = b"\x01" * 32, b"\x02" * 32
    with PaymentsClient(served.base_url, alice_key) as alice:
        hold = alice.place_hold(
            settlement_id=sid,
            leg_index=0,
            terms_hash=terms,
            payer_account="alice-usd",
            payee_account="bob-usd",
            currency="USD",
            amount_minor=600,
            deadline_s=info["time_s"] + 3600,
        )
        assert hold["state"] == "held"
        with pytest.raises(PaymentsApiError) as excinfo:
            alice.pay("alice-usd", "bob-usd", "USD", 401)
        assert excinfo.value.code == "insufficient-funds" and excinfo.value.status == 409
        assert excinfo.value.field == "amount_minor" and not excinfo.value.retryable

    async def oracle_view() -> tuple[int, int]:
        async with AsyncPaymentsClient(served.base_url, oracle_key) as oracle:
            feed = await oracle.events(wait_s=2)
            lock = feed.events[0].lock_observation("payments:served")
            assert lock.settlement_id == sid and lock.amount_minor == 600 and lock.payer == "alice-usd"
            raw, context, sigs = signed_report([(sid, terms, Decision.SETTLE)])
            record = await oracle.post_report(raw, context, sigs)
            assert record.items[0].outcome == "applied"
            again = await oracle.get_report(record.workflow_execution_id)
            assert again == record
            return feed.now_s, len(feed.events)

    now_s, count = asyncio.run(oracle_view())
    assert count == 1 and now_s >= info["time_s"] - 1
    assert served.admin.account("bob-usd")["available_minor"] == 600
    with PaymentsClient(served.base_url, "cdp_wrong") as stranger, pytest.raises(PaymentsApiError) as excinfo:
        stranger.account("bob-usd")
    assert excinfo.value.status == 401


def test_transport_failure_is_retryable() -> None:
    with (
        PaymentsClient(f"http://127.0.0.1:{free_port()}", "cdp_x", retries=0, timeout_s=1) as client,
        pytest.raises(PaymentsApiError) as excinfo,
    ):
        client.info()
    assert excinfo.value.retryable and excinfo.value.status == 0


def test_concurrent_holds_and_payments_never_overdraw(served: Served) -> None:
    amount, affordable, threads, attempts = 7, 40, 8, 12  # 96 attempts, exactly 40 can succeed
    alice_key, _ = _onboard(served.admin, amount * affordable)
    deadline = served.admin.info()["time_s"] + 3600

    def worker(index: int) -> list[str]:
        outcomes: list[str] = []
        with PaymentsClient(served.base_url, alice_key, retries=0, timeout_s=60) as alice:
            for attempt in range(attempts):
                try:
                    if attempt % 2:
                        alice.pay("alice-usd", "bob-usd", "USD", amount)
                    else:
                        alice.place_hold(
                            settlement_id=bytes([index, attempt]) + bytes(30),
                            leg_index=0,
                            terms_hash=b"\x05" * 32,
                            payer_account="alice-usd",
                            payee_account="bob-usd",
                            currency="USD",
                            amount_minor=amount,
                            deadline_s=deadline,
                        )
                    outcomes.append("ok")
                except PaymentsApiError as exc:
                    outcomes.append(exc.code)
        return outcomes

    with ThreadPoolExecutor(threads) as pool:
        results = [o for outcome in pool.map(worker, range(threads)) for o in outcome]
    assert results.count("ok") == affordable, results
    assert set(results) == {"ok", "insufficient-funds"}, results
    alice = served.admin.account("alice-usd")
    bob = served.admin.account("bob-usd")
    assert alice["available_minor"] == 0
    assert alice["held_minor"] + bob["available_minor"] == amount * affordable
    engine = make_engine(served.database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            check = verify_journal(conn)
    finally:
        engine.dispose()
    assert check.ok, check.first_break
    assert check.entries_checked == 1 + affordable


def test_concurrent_deliveries_of_a_report_apply_it_once(served: Served) -> None:
    alice_key, oracle_key = _onboard(served.admin, 1_000)
    served.admin.put_don_config(DON)
    deadline = served.admin.info()["time_s"] + 3600
    sids = [bytes([i + 1]) * 32 for i in range(5)]
    with PaymentsClient(served.base_url, alice_key) as alice:
        for sid in sids:
            alice.place_hold(
                settlement_id=sid,
                leg_index=0,
                terms_hash=b"\x02" * 32,
                payer_account="alice-usd",
                payee_account="bob-usd",
                currency="USD",
                amount_minor=100,
                deadline_s=deadline,
            )
    raw, context, sigs = signed_report([(sid, b"\x02" * 32, Decision.SETTLE) for sid in sids])

    def deliver(_: int) -> tuple[tuple[str, str | None], ...]:
        with PaymentsClient(served.base_url, oracle_key, retries=0, timeout_s=60) as oracle:
            record = oracle.post_report(raw, context, sigs)
        return tuple((item.outcome, item.reason) for item in record.items)

    with ThreadPoolExecutor(6) as pool:
        outcomes = set(pool.map(deliver, range(12)))
    assert outcomes == {(("applied", None),) * 5}
    assert served.admin.account("bob-usd")["available_minor"] == 500
    alice = served.admin.account("alice-usd")
    assert (alice["available_minor"], alice["held_minor"]) == (500, 0)
