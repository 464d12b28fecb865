"""Amounts as people read them: ``EUR 791,820.04``, ``12,500 points (PTS:northwind)``."""

from __future__ import annotations

from ledger.core import AssetKind, asset_kind
from schemas.money import format_money


def format_amount(amount: int, asset: str) -> str:
    kind = asset_kind(asset)
    if kind is AssetKind.CURRENCY:
        return format_money(amount, asset)
    if kind is AssetKind.MDF:
        return "MDF " + format_money(amount, asset.split(":", 1)[1])
    if kind is AssetKind.POINTS:
        return f"{amount:,} points"
    if kind is AssetKind.AWARD:
        return f"{amount:,} x {asset.split(':', 1)[1]}"
    return f"{amount:,} {asset}"
