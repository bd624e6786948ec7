"""The event feed: ordered events with cursors, the time watermark, long-poll and SSE."""

from __future__ import annotations

import json

from crossdvp.payments.feed import read_feed
from crossdvp.settlement.terms import Decision
from tests.payments.conftest import START_S, Ledger
from tests.payments.signing import don_body, signed_report
from tests.payments.test_holds import SID, TERMS, hold_body


def test_events_are_ordered_and_carry_the_hold(world: Ledger) -> None:
    world.admin("PUT", "/v1/don-configs/1/1", json=don_body())
    world.call("POST", "/v1/holds", world.alice_key, json=hold_body())
    world.clock.advance_s(5)
    raw, context, sigs = signed_report([(bytes.fromhex(SID[2:]), bytes.fromhex(TERMS[2:]), Decision.SETTLE)])
    world.call(
        "POST",
        "/v1/reports",
        world.oracle_key,
        json={
            "report": "0x" + raw.hex(),
            "context": "0x" + context.hex(),
            "signatures": ["0x" + s.hex() for s in sigs],
        },
    )
    page = world.call("GET", "/v1/events", world.oracle_key).json()
    assert [(e["cursor"], e["kind"], e["time_s"]) for e in page["events"]] == [
        (1, "hold_placed", START_S),
        (2, "hold_settled", START_S + 5),
    ]
    placed = page["events"][0]
    assert placed["settlement_id"] == SID and placed["terms_hash"] == TERMS
    assert placed["payer_account"] == "alice-usd" and placed["amount_minor"] == 250_000
    assert page["events"][1]["workflow_execution_id"] is not None
    assert page["next_cursor"] == 2 and page["has_more"] is False
    after = world.call("GET", "/v1/events", world.oracle_key, params={"after": 2}).json()
    assert after["events"] == [] and after["next_cursor"] == 2


def test_watermark_is_below_every_later_event(world: Ledger) -> None:
    page = world.call("GET", "/v1/events", world.oracle_key).json()
    watermark = page["now_s"]
    assert watermark == START_S - 1  # the current second may still receive events
    # Even if the wall clock steps back, nothing can be stamped at or below a watermark handed out.
    world.clock.set_s(START_S - 1000)
    world.call("POST", "/v1/holds", world.alice_key, json=hold_body())
    event = world.call("GET", "/v1/events", world.oracle_key).json()["events"][0]
    assert event["time_s"] > watermark
    # A deadline at the watermark is enforced with the same clock.
    late = world.call("POST", "/v1/holds", world.alice_key, json=hold_body(leg_index=7, deadline_s=watermark))
    assert late.status_code == 422


def test_truncated_page_keeps_watermark_below_unread_events(world: Ledger) -> None:
    for leg in range(3):
        world.call("POST", "/v1/holds", world.alice_key, json=hold_body(leg_index=leg, amount_minor=1))
        world.clock.advance_s(10)
    page = world.call("GET", "/v1/events", world.oracle_key, params={"limit": 1}).json()
    assert page["has_more"] is True and len(page["events"]) == 1
    assert page["now_s"] == START_S + 10 - 1  # just below the first event not returned
    direct = read_feed(world.store, after=0, limit=10)
    assert len(direct.events) == 3 and direct.now_s == START_S + 30 - 1


def test_long_poll_returns_when_an_event_exists(world: Ledger) -> None:
    world.call("POST", "/v1/holds", world.alice_key, json=hold_body())
    page = world.call("GET", "/v1/events", world.oracle_key, params={"wait_s": 5}).json()
    assert len(page["events"]) == 1
    empty = world.call("GET", "/v1/events", world.oracle_key, params={"after": 1, "wait_s": 0.2}).json()
    assert empty["events"] == []


def test_sse_stream(world: Ledger) -> None:
    world.call("POST", "/v1/holds", world.alice_key, json=hold_body())
    with world.http.stream(
        "GET",
        "/v1/events/stream",
        params={"max_duration_s": 0.5},
        headers={"Authorization": f"Bearer {world.oracle_key}"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    blocks = [b for b in text.split("\n\n") if b.strip()]
    first = dict(line.split(": ", 1) for line in blocks[0].splitlines())
    assert first["id"] == "1" and first["event"] == "hold_placed"
    assert json.loads(first["data"])["hold_id"] == f"hold-{'ab' * 32}-1"
    watermark = dict(line.split(": ", 1) for line in blocks[1].splitlines())
    assert watermark["event"] == "watermark" and json.loads(watermark["data"])["cursor"] == 1
