"""The journal: hash chain, zero-sum and balance invariants, and the verifier catching tampering."""

from __future__ import annotations

from sqlalchemy import select, text, update
from typer.testing import CliRunner

from crossdvp.cli import app as cli_app
from crossdvp.payments.journal import Posting, entry_hash, verify_journal
from crossdvp.payments.models import accounts, journal_entries, postings
from tests.payments.conftest import Ledger
from tests.payments.test_holds import hold_body


def _busy(world: Ledger) -> None:
    world.call("POST", "/v1/holds", world.alice_key, json=hold_body())
    world.call(
        "POST",
        "/v1/payments",
        world.alice_key,
        json={"from_account": "alice-usd", "to_account": "bob-usd", "currency": "USD", "amount_minor": 10},
    )


def _check(world: Ledger):  # type: ignore[no-untyped-def]
    with world.store.read() as conn:
        return verify_journal(conn)


def test_clean_journal_verifies(world: Ledger) -> None:
    _busy(world)
    check = _check(world)
    assert check.ok, check.first_break
    assert check.entries_checked == 3  # cash in, hold, payment
    result = CliRunner().invoke(
        cli_app,
        [
            "payments",
            "verify-journal",
            "--database-url",
            str(world.store.engine.url.render_as_string(hide_password=False)),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "journal OK: 3 entries" in result.output


def test_tampered_posting_amount_is_detected(world: Ledger) -> None:
    _busy(world)
    with world.store.engine.begin() as conn:
        # a consistent-looking forgery: both postings and the cached balances changed together
        seq = conn.execute(
            select(journal_entries.c.seq).where(journal_entries.c.kind == "payment")
        ).scalar_one()
        conn.execute(
            update(postings)
            .where(postings.c.entry_seq == seq, postings.c.amount_minor == -10)
            .values(amount_minor=-9000)
        )
        conn.execute(
            update(postings)
            .where(postings.c.entry_seq == seq, postings.c.amount_minor == 10)
            .values(amount_minor=9000)
        )
        conn.execute(update(accounts).where(accounts.c.account_id == "bob-usd").values(available_minor=9000))
        conn.execute(
            update(accounts)
            .where(accounts.c.account_id == "alice-usd")
            .values(available_minor=accounts.c.available_minor + 10 - 9000)
        )
    check = _check(world)
    assert not check.ok
    assert (
        check.first_break is not None
        and "entry seq 3" in check.first_break
        and "tampered" in check.first_break
    )
    url = world.store.engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(cli_app, ["payments", "verify-journal", "--database-url", url])
    assert result.exit_code == 1
    assert "entry seq 3" in result.output


def test_deleted_entry_and_balance_drift_are_detected(world: Ledger) -> None:
    _busy(world)
    with world.store.engine.begin() as conn:
        conn.execute(update(accounts).where(accounts.c.account_id == "bob-usd").values(available_minor=11))
    check = _check(world)
    assert not check.ok and "bob-usd" in (check.first_break or "")
    with world.store.engine.begin() as conn:
        conn.execute(update(accounts).where(accounts.c.account_id == "bob-usd").values(available_minor=10))
        conn.execute(text("DELETE FROM postings WHERE entry_seq = 3"))
        conn.execute(text("DELETE FROM journal_entries WHERE seq = 3"))
    check = _check(world)
    assert not check.ok and "ledger head" in (check.first_break or "")


def test_entry_hash_is_pinned_to_its_canonical_form() -> None:
    # Hashes a ledger already holds must verify forever: these values were computed by the first
    # implementation (`json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=True)`).
    hold = entry_hash(
        seq=7,
        kind="hold",
        time_ms=1764288000123,
        reference="hold-" + "ab" * 32 + "-0",
        prev_hash="0x" + "cd" * 32,
        lines=[Posting("payer-usd", "USD", "available", -100), Posting("payer-usd", "USD", "held", 100)],
    )
    assert hold == "0x9b2a6f9e572a7da5b7de1771c045a1cb090bbc7ecbedec54f99c31b851fdb82e"
    escaped = entry_hash(
        seq=1, kind="cash_in", time_ms=0, reference='r\u00e9f "q"', prev_hash="0x" + "00" * 32, lines=[]
    )
    assert escaped == "0xe906348984fc0e8a4f61f3d24eee51025487d421e7c747d2b82a1574cab61681"
