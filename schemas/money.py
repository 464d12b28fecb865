"""Currencies and amounts: ISO 4217 codes with their minor-unit exponents.

Money in this system is always an ``int`` of minor units (cents for EUR, yen for JPY,
fils for KWD) next to an ISO 4217 alphabetic code. Floats never hold money: binary floats
cannot represent 0.10 exactly, and a ledger that must re-derive identical results on replay
cannot tolerate the drift. The helpers here convert between minor units and the decimal
text people type and read, exactly, through ``Decimal``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Annotated

import msgspec

# Active ISO 4217 codes and their minor-unit exponents (ISO 4217 list one, "Minor unit").
# Codes without a minor unit in ISO ("N.A.": precious metals XAU/XAG/XPT/XPD, SDR XDR,
# test and no-currency codes XTS/XXX) are left out on purpose: they are not money that an
# incentive can be paid in. Withdrawn codes (HRK, SLL, CUC, ZWL) are left out too; ANG is
# kept next to its successor XCG while both circulate.
_EXPONENTS: dict[str, int] = {
    "AED": 2, "AFN": 2, "ALL": 2, "AMD": 2, "ANG": 2, "AOA": 2, "ARS": 2, "AUD": 2,
    "AWG": 2, "AZN": 2, "BAM": 2, "BBD": 2, "BDT": 2, "BGN": 2, "BHD": 3, "BIF": 0,
    "BMD": 2, "BND": 2, "BOB": 2, "BOV": 2, "BRL": 2, "BSD": 2, "BTN": 2, "BWP": 2,
    "BYN": 2, "BZD": 2, "CAD": 2, "CDF": 2, "CHE": 2, "CHF": 2, "CHW": 2, "CLF": 4,
    "CLP": 0, "CNY": 2, "COP": 2, "COU": 2, "CRC": 2, "CUP": 2, "CVE": 2, "CZK": 2,
    "DJF": 0, "DKK": 2, "DOP": 2, "DZD": 2, "EGP": 2, "ERN": 2, "ETB": 2, "EUR": 2,
    "FJD": 2, "FKP": 2, "GBP": 2, "GEL": 2, "GHS": 2, "GIP": 2, "GMD": 2, "GNF": 0,
    "GTQ": 2, "GYD": 2, "HKD": 2, "HNL": 2, "HTG": 2, "HUF": 2, "IDR": 2, "ILS": 2,
    "INR": 2, "IQD": 3, "IRR": 2, "ISK": 0, "JMD": 2, "JOD": 3, "JPY": 0, "KES": 2,
    "KGS": 2, "KHR": 2, "KMF": 0, "KPW": 2, "KRW": 0, "KWD": 3, "KYD": 2, "KZT": 2,
    "LAK": 2, "LBP": 2, "LKR": 2, "LRD": 2, "LSL": 2, "LYD": 3, "MAD": 2, "MDL": 2,
    "MGA": 2, "MKD": 2, "MMK": 2, "MNT": 2, "MOP": 2, "MRU": 2, "MUR": 2, "MVR": 2,
    "MWK": 2, "MXN": 2, "MXV": 2, "MYR": 2, "MZN": 2, "NAD": 2, "NGN": 2, "NIO": 2,
    "NOK": 2, "NPR": 2, "NZD": 2, "OMR": 3, "PAB": 2, "PEN": 2, "PGK": 2, "PHP": 2,
    "PKR": 2, "PLN": 2, "PYG": 0, "QAR": 2, "RON": 2, "RSD": 2, "RUB": 2, "RWF": 0,
    "SAR": 2, "SBD": 2, "SCR": 2, "SDG": 2, "SEK": 2, "SGD": 2, "SHP": 2, "SLE": 2,
    "SOS": 2, "SRD": 2, "SSP": 2, "STN": 2, "SVC": 2, "SYP": 2, "SZL": 2, "THB": 2,
    "TJS": 2, "TMT": 2, "TND": 3, "TOP": 2, "TRY": 2, "TTD": 2, "TWD": 2, "TZS": 2,
    "UAH": 2, "UGX": 0, "USD": 2, "USN": 2, "UYI": 0, "UYU": 2, "UYW": 4, "UZS": 2,
    "VED": 2, "VES": 2, "VND": 0, "VUV": 0, "WST": 2, "XAF": 0, "XCD": 2, "XCG": 2,
    "XOF": 0, "XPF": 0, "YER": 2, "ZAR": 2, "ZMW": 2, "ZWG": 2,
}  # fmt: skip

EXPONENTS: Mapping[str, int] = MappingProxyType(_EXPONENTS)

# Bound on any single amount, in minor units. 10**15 is a quadrillion cents (ten trillion
# EUR): far above any real sale, and low enough that summing a million of them stays
# inside PostgreSQL's bigint (9.2 * 10**18), so no sum can overflow downstream.
MAX_MINOR_UNITS = 10**15

# Bound on what one account of a partner may hold, in minor units (or points, or award
# units): a command that would take a partner's balance beyond it is refused
# (``balance_limit``). A thousand times the largest amount, a tenth of bigint: every
# balance, and the sum of a few of them, fits 64 bits for every reader. The accounts all
# partners share (a program's expense) are summed in PostgreSQL as numeric, unbounded.
MAX_BALANCE_MINOR_UNITS = 10**18

# The field type for a currency code. Membership in the table is checked by the owning
# struct (it raises ``unknown_currency``); the enum is published in the JSON Schema so
# upstream validators catch a bad code before sending.
CurrencyCode = Annotated[
    str,
    msgspec.Meta(
        description="ISO 4217 alphabetic code, upper case, e.g. EUR",
        extra_json_schema={"enum": sorted(_EXPONENTS)},
    ),
]

Amount = Annotated[
    int,
    msgspec.Meta(
        ge=-MAX_MINOR_UNITS,
        le=MAX_MINOR_UNITS,
        description="Signed integer of minor units of the currency (or asset).",
    ),
]
NonNegativeAmount = Annotated[
    int,
    msgspec.Meta(
        ge=0,
        le=MAX_MINOR_UNITS,
        description="Integer of minor units of the currency, never a decimal.",
    ),
]
PositiveAmount = Annotated[
    int,
    msgspec.Meta(
        gt=0,
        le=MAX_MINOR_UNITS,
        description="Integer > 0 of minor units of the currency, never a decimal.",
    ),
]


def is_currency(code: str) -> bool:
    """True if ``code`` is an ISO 4217 code this system accepts (case-sensitive)."""
    return code in _EXPONENTS


def exponent(code: str) -> int:
    """The number of decimal places of ``code``'s minor unit (EUR 2, JPY 0, KWD 3)."""
    try:
        return _EXPONENTS[code]
    except KeyError:
        raise ValueError(f"unknown currency {code!r}: not an ISO 4217 code") from None


def to_minor(text: str, code: str) -> int:
    """Parse decimal text in major units ("12.50") into minor units (1250) exactly.

    Raises ``ValueError`` if the text is not a decimal number or has more decimal places
    than the currency has (12.505 EUR), because silently rounding money is never right.
    """
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a decimal amount") from None
    if not value.is_finite():
        raise ValueError(f"{text!r} is not a finite amount")
    scaled = value.scaleb(exponent(code))
    if scaled != scaled.to_integral_value():
        raise ValueError(
            f"{text!r} has more than {exponent(code)} decimal places, the minor unit of {code}"
        )
    return int(scaled)


def format_minor(amount: int, code: str) -> str:
    """Render minor units as major-unit text with the currency: 1250, EUR -> "12.50 EUR"."""
    places = exponent(code)
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**places)
    if places == 0:
        return f"{sign}{whole} {code}"
    return f"{sign}{whole}.{frac:0{places}d} {code}"


def format_money(amount: int, code: str) -> str:
    """Minor units as finance reads them, code first and thousands grouped:
    79182004, EUR -> "EUR 791,820.04"; -5, EUR -> "EUR -0.05"; 1500, JPY -> "JPY 1,500"."""
    places = exponent(code)
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**places)
    if places == 0:
        return f"{code} {sign}{whole:,}"
    return f"{code} {sign}{whole:,}.{frac:0{places}d}"
