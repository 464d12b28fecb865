"""Exact integer arithmetic for amounts: half-even rounding, basis points, largest remainder.

Every amount the engine computes is an ``int`` of minor units (or points, or award items).
A fraction is rounded once, half to even, with integer arithmetic only: a float never
holds money. Each rounding is returned together with the exact fraction it came from, so
the ledger explanation can show both (``ledger.core.Rounding``).
"""

from collections.abc import Sequence
from typing import Final

from ledger.core import Rounding

HALF_EVEN: Final = "half_even"
BP_PER_UNIT: Final = 10_000


def round_half_even(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded to the nearest integer, ties to the even one."""
    assert denominator > 0, f"denominator must be positive, got {denominator}"
    quotient, remainder = divmod(numerator, denominator)  # floor division, remainder >= 0
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


def exact_text(numerator: int, denominator: int) -> str:
    """The exact value of a fraction as text: a finite decimal when there is one
    (``"1234.5"``), else the reduced fraction (``"100/3"``)."""
    assert denominator > 0, f"denominator must be positive, got {denominator}"
    a, b = numerator, denominator
    g = _gcd(abs(a), b)
    a, b = a // g, b // g
    places, rest = 0, b
    for prime in (2, 5):
        while rest % prime == 0:
            rest //= prime
    if rest != 1:
        return f"{a}/{b}"
    while 10**places % b != 0:
        places += 1
    scaled = a * (10**places // b)
    if places == 0:
        return str(scaled)
    sign = "-" if scaled < 0 else ""
    whole, frac = divmod(abs(scaled), 10**places)
    return f"{sign}{whole}.{frac:0{places}d}".rstrip("0").rstrip(".")


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a or 1


def rounded(numerator: int, denominator: int) -> tuple[int, Rounding]:
    """The rounded value and the ``Rounding`` that explains it."""
    result = round_half_even(numerator, denominator)
    return result, Rounding(
        mode=HALF_EVEN, exact=exact_text(numerator, denominator), result=result
    )


def apply_bp(base: int, rate_bp: int) -> tuple[int, Rounding]:
    """``base * rate_bp / 10_000``, rounded half-even to a whole unit."""
    return rounded(base * rate_bp, BP_PER_UNIT)


def largest_remainder(weights: Sequence[int], total: int, keys: Sequence[str]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` so that the parts sum to ``total`` exactly.

    Every share is floored; the units left over go one each to the largest fractional
    remainders, ties by ascending ``keys`` (partner ids), so the split is deterministic.
    Zero or negative weights receive nothing; all-zero weights are a programmer error.
    """
    assert len(weights) == len(keys), "one key per weight"
    assert total >= 0, f"total must not be negative, got {total}"
    clean = [max(w, 0) for w in weights]
    weight_sum = sum(clean)
    assert weight_sum > 0 or total == 0, "cannot split a non-zero total over zero weights"
    if weight_sum == 0:
        return [0 for _ in clean]
    shares = [total * w // weight_sum for w in clean]
    left = total - sum(shares)
    # Remainders compared as numerators over the common denominator weight_sum.
    order = sorted(
        range(len(clean)), key=lambda i: (-(total * clean[i] % weight_sum), keys[i])
    )
    for i in order[:left]:
        shares[i] += 1
    return shares
