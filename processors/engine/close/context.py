"""What every period rule sees at a close: the program, the period, all partners' states."""

import datetime as dt
from collections.abc import Iterator, Mapping

from processors.engine.compiled import CompiledProgram, CompiledRule, Subject
from processors.engine.hierarchy import children_of
from processors.engine.metrics import period_net_sales, surveys
from processors.engine.periods import ends_with_month, period_key, period_months
from processors.engine.state import PartnerState
from processors.engine.tiers import current_tier


class Close:
    def __init__(self, cp: CompiledProgram, last_day: dt.date,
                 states: Mapping[str, PartnerState]) -> None:
        self.cp = cp
        self.last_day = last_day
        self.states = {pid: states[pid] for pid in sorted(states)}
        self._children: dict[str, list[str]] | None = None

    @property
    def children(self) -> dict[str, list[str]]:
        """Parent id -> children (``engine.hierarchy``), built once per close."""
        if self._children is None:
            self._children = children_of(self.states)
        return self._children

    def ends(self, cr: CompiledRule) -> bool:
        """Whether the rule's period ends with the month being closed."""
        return cr.period is not None and ends_with_month(cr.period, self.last_day)

    def months(self, cr: CompiledRule) -> tuple[str, ...]:
        assert cr.period is not None
        return period_months(cr.period, self.last_day)

    def period_key(self, cr: CompiledRule) -> str:
        assert cr.period is not None
        return period_key(cr.period, self.last_day)

    def tier(self, state: PartnerState) -> str | None:
        return current_tier(state, self.cp)

    def eligible(self, cr: CompiledRule, state: PartnerState) -> bool:
        """Eligibility at the period's last day, with the tier held at the close."""
        assert cr.period is not None
        return cr.eligible(Subject(
            profile=state.profile,
            tier=self.tier(state),
            day=self.last_day,
            period_volume=period_net_sales(state, cr.period, self.last_day, self.cp.currency),
            period_surveys=(surveys(state, self.months(cr), self.cp.scale_name)
                            if cr.needs_surveys else (0, 0)),
        ))

    def partners(self, cr: CompiledRule) -> Iterator[tuple[str, PartnerState]]:
        """Eligible partners, by ascending id."""
        for pid, state in self.states.items():
            if self.eligible(cr, state):
                yield pid, state
