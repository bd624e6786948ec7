"""Amounts typed by people (decimal strings) to integer minor units and back, exactly (Decimal, never
float). "1.5" shares of an 18-decimal token is 1_500_000_000_000_000_000; "10.001" USD is refused."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation, localcontext

from crossdvp.client.errors import InvalidOrder

__all__ = ["currency_decimals", "format_amount", "parse_amount"]

# ISO 4217 minor units where they are not 2.
_CURRENCY_DECIMALS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3, "CLF": 4, "UYW": 4,
}  # fmt: skip


def currency_decimals(currency: str) -> int:
    """Minor-unit digits of an ISO 4217 code (2 unless listed otherwise).

    Rejects (InvalidOrder) a code that is not three capital letters."""
    if len(currency) != 3 or not currency.isascii() or not currency.isalpha() or not currency.isupper():
        raise InvalidOrder(f"currency must be an ISO 4217 code such as USD, got {currency!r}")
    return _CURRENCY_DECIMALS.get(currency, 2)


def parse_amount(text: str, decimals: int, *, field: str) -> int:
    """`text` (e.g. "1000.50") in minor units with `decimals` digits.

    Rejects (InvalidOrder naming `field`): not a number (including NaN/Infinity), zero or negative,
    more decimal places than `decimals`."""
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, ValueError):
        raise InvalidOrder(f"{field} must be a number, got {text!r}") from None
    if not value.is_finite():
        raise InvalidOrder(f"{field} must be a finite number, got {text!r}")
    if value <= 0:
        raise InvalidOrder(f"{field} must be positive, got {text}")
    with localcontext() as ctx:
        ctx.prec = 200  # exact for any amount that fits a uint256
        scaled = value.scaleb(decimals)
        if scaled != scaled.to_integral_value():
            raise InvalidOrder(f"{field} {text} has more than {decimals} decimal places")
        return int(scaled)


def format_amount(minor: int, decimals: int) -> str:
    """Minor units as a decimal string with thousands separators, trailing zeros trimmed to at
    least two decimals for currencies (e.g. 100050 with 2 -> "1,000.50"; 10**18 with 18 -> "1")."""
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**decimals) if decimals else (abs(minor), 0)
    text = f"{whole:,}"
    if decimals:
        digits = f"{frac:0{decimals}d}".rstrip("0")
        if decimals <= 4:
            digits = digits.ljust(decimals, "0")
        if digits:
            text += "." + digits
    return sign + text
