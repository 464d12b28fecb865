"""The sample traffic generator: its concentrated default and its even variant."""

from __future__ import annotations

from collections import Counter

from incentives.sample_data import generate, partner_ids


def _sales_by_partner(messages: list[dict[str, object]]) -> Counter[object]:
    return Counter(m["partner_id"] for m in messages if m["type"] == "SaleRecorded")


def test_by_default_a_few_partners_make_most_sales() -> None:
    sales = _sales_by_partner(generate(partners=100, sales=3_000))
    largest = sales.most_common(1)[0][1]
    assert largest > 0.25 * sum(sales.values())  # a Pareto draw: the largest takes a share


def test_the_even_variant_sends_the_sales_round_the_partners() -> None:
    messages = generate(partners=100, sales=3_000, even=True)
    sales = _sales_by_partner(messages)
    assert set(sales) == set(partner_ids(100))
    assert set(sales.values()) == {30}
    # The rest of the traffic is of the same kinds as the default's.
    kinds = {str(m["type"]) for m in messages}
    assert kinds == {str(m["type"]) for m in generate(partners=100, sales=3_000)}
