"""End to end: Chromium (Playwright) against `crossdvp console` on a real devnet.

Each test marks the page (`window.__loaded`) after loading it and checks the mark is still there at
the end: what it saw arrived by polling, not by a reload. Screenshots go to test-artifacts/console/.
Waits are for conditions (with generous limits), never fixed sleeps.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from crossdvp.devnet.keyfiles import load_key, read_secret
from crossdvp.payments.client import PaymentsClient
from crossdvp.process import start_process
from tests.console.conftest import ARTIFACTS

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("aborting")]

SETTLE_WAIT_MS = 90_000  # a DvP settles in seconds on the devnet; an abort needs the deadline to pass
DOWN_WAIT_MS = 15_000


def _mark(page: Any) -> None:
    page.evaluate("window.__loaded = true")


def _not_reloaded(page: Any) -> bool:
    return bool(page.evaluate("window.__loaded === true"))


def _sid(terms: Any) -> str:
    return "0x" + terms.settlement_id.hex()


def test_a_settlement_from_the_cli_appears_in_the_list_and_settles_live(
    page: Any, console_url: str, devnet: Any
) -> None:
    page.goto(f"{console_url}/settlements")
    _mark(page)
    before = set(page.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.settlementId)"))
    argv = [
        sys.executable,
        "-m",
        "crossdvp.cli",
        "settle",
        "--asset-amount",
        "12.5",
        "--cash-amount",
        "1250.00",
        "--currency",
        "USD",
        "--buyer",
        "buyer",
        "--seller",
        "seller",
        "--dir",
        str(devnet.directory),
        "--json",
    ]
    cli = start_process(
        "settle-cli", argv, log_path=devnet.directory / "logs" / "settle-cli.log", ready=lambda: True
    )
    try:
        new_row = page.locator("tbody tr").filter(has_text="12.50 OUSG")
        expect(new_row).to_have_count(1, timeout=SETTLE_WAIT_MS)
        sid = new_row.get_attribute("data-settlement-id")
        assert sid is not None and sid not in before
        expect(new_row).to_contain_text("1,250.00 USD")
        expect(new_row.locator("[data-status]")).to_have_attribute(
            "data-status", "settled", timeout=SETTLE_WAIT_MS
        )
        assert cli.popen.wait(timeout=SETTLE_WAIT_MS / 1000) == 0, cli.log_tail()
    finally:
        cli.stop()
    assert _not_reloaded(page)
    page.screenshot(path=str(ARTIFACTS / "settlements-cli-settled.png"), full_page=True)
    page.locator(f"#s-{sid}").click()
    expect(page.locator("#settlement-status [data-status]")).to_have_attribute("data-status", "settled")


def test_a_settlement_from_the_sdk_appears_live_and_reaches_settled(
    page: Any, console_url: str, desk: Any
) -> None:
    page.goto(f"{console_url}/settlements")
    _mark(page)
    terms = desk.propose(
        asset_amount=25 * 10**18,
        cash_amount=2_512_345,
        currency="USD",
        buyer="buyer",
        seller="seller",
        deadline_s=desk.deadline_in(60),
    )
    desk.register(terms)
    row = page.locator(f'tr[data-settlement-id="{_sid(terms)}"]')
    expect(row).to_be_visible(timeout=SETTLE_WAIT_MS)
    expect(row).to_contain_text("25.00 OUSG")
    expect(row).to_contain_text("25,123.45 USD")
    expect(row).to_contain_text("seller")
    assert _not_reloaded(page)
    page.screenshot(path=str(ARTIFACTS / "settlements-new-row.png"), full_page=True)

    page.locator(f"#s-{_sid(terms)}").click()
    page.wait_for_url(f"**/settlements/{_sid(terms)}")
    _mark(page)
    expect(page.locator("#settlement-status [data-status]")).to_have_attribute("data-status", "registered")
    page.screenshot(path=str(ARTIFACTS / "settlement-registered.png"), full_page=True)
    desk.lock_asset(terms, "seller")
    desk.place_hold(terms, "buyer")
    status = page.locator("#settlement-status [data-status]")
    expect(status).to_have_attribute("data-status", "settled", timeout=SETTLE_WAIT_MS)
    expect(status).to_have_text("SETTLED")
    assert _not_reloaded(page)
    expect(page.locator('[data-movement="paid"]')).to_have_count(2)
    expect(page.locator(".timeline")).to_contain_text("Report signed")
    expect(page.locator('[data-leg="0"]')).to_contain_text("Lock tx")
    expect(page.locator('[data-leg="1"]')).to_contain_text("hold-")
    page.screenshot(path=str(ARTIFACTS / "settlement-settled.png"), full_page=True)


@pytest.fixture(scope="module")
def aborting(desk: Any, devnet: Any) -> Any:
    """A settlement bound to abort, created before the other tests so that its deadline passes while
    they run: the seller locks, the buyer holds one cent less than agreed. A lock that does not match
    is treated as absent, so after the deadline the DON decides ABORT and both locks are refunded."""
    terms = desk.propose(
        asset_amount=5 * 10**18,
        cash_amount=50_000,
        currency="USD",
        buyer="buyer",
        seller="seller",
        deadline_s=desk.deadline_in(12),
    )
    desk.register(terms)
    desk.lock_asset(terms, "seller")
    buyer = devnet.parties["buyer"]
    leg = terms.legs[1]
    with PaymentsClient(devnet.payments.url, read_secret(buyer.payments_key_file)) as ledger:
        ledger.place_hold(
            settlement_id=terms.settlement_id,
            leg_index=1,
            terms_hash=terms.terms_hash,
            payer_account=leg.payer,
            payee_account=leg.payee,
            currency=leg.asset,
            amount_minor=leg.amount_minor - 1,
            deadline_s=terms.deadline_s,
        )
    return terms


def test_an_aborted_settlement_shows_both_refunds(page: Any, console_url: str, aborting: Any) -> None:
    page.goto(f"{console_url}/settlements/{_sid(aborting)}")
    _mark(page)
    expect(page.locator('[data-leg="1"]')).to_contain_text("does not match the terms", timeout=SETTLE_WAIT_MS)
    status = page.locator("#settlement-status [data-status]")
    expect(status).to_have_attribute("data-status", "aborted", timeout=SETTLE_WAIT_MS)
    assert _not_reloaded(page)
    expect(page.locator('[data-movement="refunded"]')).to_have_count(2)
    expect(page.locator('[data-leg="0"]')).to_have_attribute("data-leg-state", "refunded")
    expect(page.locator('[data-leg="1"]')).to_have_attribute("data-leg-state", "refunded")
    page.screenshot(path=str(ARTIFACTS / "settlement-aborted.png"), full_page=True)


def test_the_list_filters_by_status_and_party(page: Any, console_url: str) -> None:
    page.goto(f"{console_url}/settlements")
    _mark(page)
    page.select_option("#filter-status", "aborted")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr [data-status]")).to_have_attribute("data-status", "aborted")
    assert "status=aborted" in page.url  # the filter is in the address, so it survives a reload
    page.select_option("#filter-status", "")
    page.fill("#filter-party", "nobody-at-all")
    expect(page.locator("p.empty")).to_be_visible()
    assert _not_reloaded(page)


def test_the_pages_are_keyboard_usable(page: Any, console_url: str) -> None:
    page.goto(f"{console_url}/settlements")
    # A focused row link keeps the focus when the list refreshes under it.
    first_link = page.locator("tbody tr a").first
    first_link.focus()
    page.evaluate(
        "() => new Promise(done => document.getElementById('live')"
        ".addEventListener('console:updated', done, {once: true}))"
    )
    expect(page.locator("tbody tr a").first).to_be_focused()
    page.goto(f"{console_url}/settlements")
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("nav a", has_text="Settlements")).to_be_focused()
    page.screenshot(
        path=str(ARTIFACTS / "keyboard-focus.png"), clip={"x": 0, "y": 0, "width": 1366, "height": 300}
    )
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # the DON link
    page.wait_for_url("**/don")
    page.screenshot(path=str(ARTIFACTS / "don.png"), full_page=True)
    page.goto(f"{console_url}/ledgers")
    expect(page.locator("#total-supply")).to_contain_text("10,000.00 OUSG")
    page.screenshot(path=str(ARTIFACTS / "ledgers.png"), full_page=True)


def _secrets(devnet: Any) -> list[str]:
    """Every secret the devnet wrote: the keystore password, the ledger API keys, the private keys."""
    keys_dir = devnet.directory / "keys"
    password = read_secret(devnet.password_file)
    found = [password]
    for path in sorted(keys_dir.iterdir()):
        if path.name.endswith(".keystore.json"):
            raw = load_key(path, password)
            found += [raw.hex(), "0x" + raw.hex()]
        elif path.name.endswith(".key"):
            found.append(read_secret(path))
    assert len(found) > 5  # the scan must have something to look for
    return found


def test_no_page_or_answer_contains_a_key(console_url: str, devnet: Any) -> None:
    secrets = _secrets(devnet)
    with httpx.Client(base_url=console_url, timeout=30) as http:
        sids = [s["settlement_id"] for s in http.get("/api/settlements").json()["settlements"]]
        assert sids, "the earlier tests created settlements"
        paths = [
            "/settlements",
            "/don",
            "/ledgers",
            "/api/settlements",
            "/api/don",
            "/api/ledgers",
            "/fragments/settlements",
            "/fragments/don",
            "/fragments/ledgers",
            "/static/console.js",
            "/static/console.css",
        ]
        for sid in sids:
            paths += [f"/settlements/{sid}", f"/api/settlements/{sid}", f"/fragments/settlements/{sid}"]
        for path in paths:
            body = http.get(path).text
            leaked = [s[:6] + "…" for s in secrets if s in body]
            assert not leaked, f"{path} contains secrets starting {leaked}"


def test_a_killed_node_shows_as_down(page: Any, console_url: str, devnet: Any) -> None:
    page.goto(f"{console_url}/don")
    _mark(page)
    victim = devnet.nodes[-1].name
    card = page.locator(f'[data-node="{victim}"]')
    expect(card).to_have_attribute("data-health", "up", timeout=DOWN_WAIT_MS)
    record = devnet.process(victim)
    assert record is not None and record.alive()
    os.kill(record.pid, signal.SIGKILL)  # a crash, not a shutdown
    expect(card).to_have_attribute("data-health", "down", timeout=DOWN_WAIT_MS)
    expect(card).to_contain_text("DOWN")
    expect(page.locator('[data-health="up"]')).to_have_count(len(devnet.nodes) - 1)
    assert _not_reloaded(page)
    page.screenshot(path=str(ARTIFACTS / "don-node-down.png"), full_page=True)
