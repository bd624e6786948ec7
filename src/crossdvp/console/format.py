"""How the console writes numbers and times: money with the asset's decimals, UTC times with a
relative age, shortened hashes. Pure functions of their arguments (the caller passes `now_s`)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = [
    "CURRENCY_DECIMALS",
    "countdown",
    "currency_decimals",
    "format_amount",
    "format_duration",
    "format_utc",
    "relative_age",
    "short_hex",
    "short_hold_id",
]

# ISO 4217 minor units of the currencies a bank ledger is likely to carry. A currency not listed here
# is shown with 2 decimals, the ISO default for most currencies.
CURRENCY_DECIMALS: dict[str, int] = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "CHF": 2,
    "SGD": 2,
    "HKD": 2,
    "CAD": 2,
    "AUD": 2,
    "JPY": 0,
    "KRW": 0,
    "BHD": 3,
    "KWD": 3,
    "OMR": 3,
}


def currency_decimals(code: str) -> int:
    """Minor-unit digits of an ISO 4217 currency code (2 when the code is not in the table)."""
    return CURRENCY_DECIMALS.get(code.upper(), 2)


def format_amount(amount_minor: int, decimals: int, *, max_fraction: int | None = None) -> str:
    """`amount_minor` in major units with thousands separators, exactly (integer arithmetic, no float).

    Trailing zeros of the fraction are dropped down to 2 digits (money reads as 1,250.00 and
    fund shares as 1,250.00 rather than 1,250.000000000000000000); `max_fraction` caps the digits
    shown (the last shown digit is truncated, never rounded up, so the display never overstates).

    Rejections: ValueError if `decimals` is negative.
    """
    if decimals < 0:
        raise ValueError(f"decimals must be >= 0, got {decimals}")
    sign = "-" if amount_minor < 0 else ""
    whole, fraction = divmod(abs(amount_minor), 10**decimals)
    text = f"{sign}{whole:,}"
    if decimals == 0:
        return text
    digits = str(fraction).rjust(decimals, "0")
    keep = min(decimals, 2)
    trimmed = digits.rstrip("0")
    digits = digits[: max(keep, len(trimmed))]
    if max_fraction is not None:
        digits = digits[:max_fraction]
    return f"{text}.{digits}" if digits else text


def format_utc(time_s: int | None) -> str:
    """`2026-11-26 14:03:07 UTC`, or an em dash when the time is unknown."""
    if time_s is None:
        return "—"
    return datetime.fromtimestamp(time_s, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_duration(seconds: int) -> str:
    """A short human duration: `42 s`, `3 min 05 s`, `2 h 07 min`, `3 d 4 h`."""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def relative_age(time_s: int | None, now_s: int) -> str:
    """`12 s ago`, `in 3 min 05 s`, `just now`; an em dash when the time is unknown."""
    if time_s is None:
        return "—"
    delta = now_s - time_s
    if delta == 0:
        return "just now"
    return f"{format_duration(delta)} ago" if delta > 0 else f"in {format_duration(delta)}"


def countdown(deadline_s: int, now_s: int) -> str:
    """`42 s left` before the deadline, `due now` at it, `passed 3 s ago` after it."""
    if deadline_s > now_s:
        return f"{format_duration(deadline_s - now_s)} left"
    if deadline_s == now_s:
        return "due now"
    return f"passed {format_duration(now_s - deadline_s)} ago"


def short_hex(value: str | None, head: int = 6, tail: int = 4) -> str:
    """`0x1234ab…cdef` for long hex strings (addresses, hashes); other text unchanged."""
    if value is None:
        return "—"
    if value.startswith("0x") and len(value) > 2 + head + tail + 1:
        return f"{value[: 2 + head]}…{value[-tail:]}"
    return value


def short_hold_id(hold_id: str | None) -> str:
    """`hold-2c89da0f…f3b4-1` for the ledger's `hold-<settlement id hex>-<leg>` ids; others unchanged."""
    if hold_id is None:
        return "—"
    prefix, _, rest = hold_id.partition("-")
    settlement_hex, _, leg = rest.rpartition("-")
    if prefix != "hold" or len(settlement_hex) != 64 or not leg:
        return hold_id
    return f"hold-{settlement_hex[:8]}…{settlement_hex[-4:]}-{leg}"
