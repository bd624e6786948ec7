from __future__ import annotations

import pytest

from crossdvp.console.format import currency_decimals, format_amount, format_utc, relative_age, short_hex


@pytest.mark.parametrize(
    ("amount", "decimals", "text"),
    [
        (123456, 2, "1,234.56"),
        (100, 2, "1.00"),
        (5, 2, "0.05"),
        (0, 2, "0.00"),
        (-250, 2, "-2.50"),
        (1234, 0, "1,234"),
        (25 * 10**18, 18, "25.00"),
        (10**18 + 5 * 10**17, 18, "1.50"),
        (1, 18, "0.000000000000000001"),
        (10_000_000 * 10**18, 18, "10,000,000.00"),
        (1_234_567, 3, "1,234.567"),
    ],
)
def test_amounts_are_exact_with_the_assets_decimals(amount: int, decimals: int, text: str) -> None:
    assert format_amount(amount, decimals) == text


def test_max_fraction_truncates_never_rounds_up() -> None:
    assert format_amount(1_999_999, 6, max_fraction=2) == "1.99"


def test_negative_decimals_are_refused() -> None:
    with pytest.raises(ValueError, match="decimals"):
        format_amount(1, -1)


def test_currency_decimals_follow_iso_4217() -> None:
    assert currency_decimals("USD") == 2
    assert currency_decimals("jpy") == 0
    assert currency_decimals("KWD") == 3
    assert currency_decimals("XYZ") == 2


def test_times_are_utc_with_relative_age() -> None:
    assert format_utc(0) == "1970-01-01 00:00:00 UTC"
    assert format_utc(None) == "—"
    assert relative_age(100, 142) == "42 s ago"
    assert relative_age(100, 100) == "just now"
    assert relative_age(400, 100) == "in 5 min 00 s"
    assert relative_age(0, 3 * 3600 + 7 * 60) == "3 h 07 min ago"
    assert relative_age(0, 2 * 86400 + 3600) == "2 d 1 h ago"
    assert relative_age(None, 5) == "—"


def test_short_hex_keeps_short_text() -> None:
    assert short_hex("0x" + "ab" * 20) == "0xababab…abab"
    assert short_hex("USD") == "USD"
    assert short_hex("0x" + "ab" * 32, 10, 6) == "0xababababab…ababab"


def test_hold_ids_are_shortened_keeping_the_leg() -> None:
    from crossdvp.console.format import short_hold_id

    assert short_hold_id("hold-" + "ab" * 32 + "-1") == "hold-abababab…abab-1"
    assert short_hold_id("hold-short-1") == "hold-short-1"


def test_deadline_countdown() -> None:
    from crossdvp.console.format import countdown

    assert countdown(160, 100) == "1 min 00 s left"
    assert countdown(100, 100) == "due now"
    assert countdown(100, 103) == "passed 3 s ago"
