"""Awards that compare partners: ranking (销售冠军), team competition (团队竞赛), pool share
(分享销售利润).

Ties never merge or split a prize: the rule's ``tie_break`` list orders equal values
(``reached_first``: the partner, or team, whose last sale or reversal of the period came
earlier ranks higher; ``partner_id``/``team_id``: ascending id), and it always ends in an
id, so the order is total. A team's ``reached_first`` time is its members' latest.
``scope: with_children`` counts for a partner its own metric and that of every partner
below it in the distribution hierarchy (for a team member, those below it down to the
next competing member, who counts its own network: no sale counts twice); its time is the
latest of theirs.
Splits use the largest remainder method with ties by ascending partner id, so a prize or
pool is paid to the last unit.
"""

import datetime as dt
from fractions import Fraction

from ledger.core import InputScalar, InputValue, Rounding
from processors.engine.close.awards import Award, order_key
from processors.engine.close.context import Close
from processors.engine.compiled import CompiledRule
from processors.engine.hierarchy import below
from processors.engine.metrics import last_change, metric_value
from processors.engine.money import apply_bp, exact_text, largest_remainder
from schemas.programs import (
    Metric,
    PoolShareRule,
    RankingRule,
    Scope,
    Split,
    TeamAggregate,
    TeamCompetitionRule,
)


def _measure(close: Close, pid: str, metric: Metric, months: tuple[str, ...], scope: Scope,
             leave_out: frozenset[str] = frozenset()) -> tuple[int, dt.datetime | None]:
    """The partner's metric and when it last changed; ``with_children``: together with the
    partners below it, each counted once, except those in ``leave_out`` and everything
    below them (they count for themselves)."""
    group = [pid]
    if scope is Scope.WITH_CHILDREN:
        group += [b.partner_id for b in below(close.children, pid, stop=leave_out - {pid})
                  if b.partner_id in close.states]
    value = 0
    reached: dt.datetime | None = None
    for member in group:
        state = close.states[member]
        value += metric_value(state, metric, months, close.cp.currency)
        at = last_change(state, metric, months)
        if at is not None and (reached is None or at > reached):
            reached = at
    return value, reached


def ranking(close: Close, cr: CompiledRule, rule: RankingRule) -> list[Award]:
    months = close.months(cr)
    ranked: list[tuple[tuple[object, ...], str, int, dt.datetime | None]] = []
    for pid, _ in close.partners(cr):
        value, reached = _measure(close, pid, rule.metric, months, rule.scope)
        if value < rule.min_value:
            continue
        ranked.append((order_key(value, reached, pid, rule.tie_break), pid, value, reached))
    ranked.sort(key=lambda r: r[0])
    top = ranked[: rule.top_n]
    order: list[InputScalar] = [pid for _, pid, _, _ in top]
    awards: list[Award] = []
    for rank, (_, pid, value, reached) in enumerate(top, start=1):
        inputs: dict[str, InputValue] = {
            "period": close.period_key(cr), "metric": str(rule.metric), "value": value,
            "rank": rank, "reached_at": None if reached is None else reached.isoformat(),
            "tie_break": list[InputScalar](str(t) for t in rule.tie_break), "ranked": order,
        }
        if rule.scope is not Scope.OWN:
            inputs["scope"] = str(rule.scope)
        awards.append(Award(partner_id=pid, rule=cr, asset=cr.asset or "",
                            amount=rule.amounts[rank - 1],
                            summary=f"Rank {rank} of {close.period_key(cr)} by {rule.metric}",
                            formula="amounts[rank - 1]", inputs=inputs, hold_days=cr.hold_days))
    return awards


def team_competition(close: Close, cr: CompiledRule, rule: TeamCompetitionRule) -> list[Award]:
    months = close.months(cr)
    listed = frozenset(rule.teams)
    teams_of: dict[str, str] = {}
    for pid, state in close.partners(cr):
        team = state.profile.team if state.profile is not None else None
        if team is not None and (not listed or team in listed):
            teams_of[pid] = team
    # With children, a member counts the partners below it down to the next competing member.
    competing = frozenset(teams_of)
    members: dict[str, list[tuple[str, int, dt.datetime | None]]] = {}
    for pid, team in teams_of.items():
        value, reached = _measure(close, pid, rule.metric, months, rule.scope, competing)
        members.setdefault(team, []).append((pid, value, reached))
    teams: list[tuple[tuple[object, ...], str, Fraction]] = []
    for team, people in members.items():
        total = sum(v for _, v, _ in people)
        team_value = (Fraction(total) if rule.aggregate is TeamAggregate.SUM
                      else Fraction(total, len(people)))
        if team_value < rule.min_team_value:
            continue
        times = [t for _, _, t in people if t is not None]
        teams.append((order_key(team_value, max(times) if times else None, team,
                                rule.tie_break), team, team_value))
    teams.sort(key=lambda t: t[0])
    winners = teams[: rule.winners]
    standings: list[InputScalar] = [team for _, team, _ in winners]
    awards: list[Award] = []
    for place, (_, team, team_value) in enumerate(winners, start=1):
        prize = rule.prizes[place - 1]
        people = sorted(members[team])
        ids = [pid for pid, _, _ in people]
        weights = [1] * len(people) if rule.split is Split.EQUAL else [v for _, v, _ in people]
        shares = largest_remainder(weights, prize, ids)
        for (pid, contribution, _), w, share in zip(people, weights, shares, strict=True):
            if share <= 0:
                continue
            inputs: dict[str, InputValue] = {
                "period": close.period_key(cr), "team": team, "place": place, "prize": prize,
                "team_value": exact_text(team_value.numerator, team_value.denominator),
                "members": len(people), "contribution": contribution,
                "split": str(rule.split), "winners": standings,
            }
            awards.append(Award(
                partner_id=pid, rule=cr, asset=cr.asset or "", amount=share,
                summary=f"Team {team} placed {place}: share of {prize}",
                formula="prize split " + ("equally" if rule.split is Split.EQUAL else
                                          "by max(contribution, 0)") + ", largest remainder",
                inputs=inputs, hold_days=cr.hold_days,
                rounding=_split_rounding(prize * max(w, 0), sum(max(x, 0) for x in weights),
                                         share)))
    return awards


def pool_share(close: Close, cr: CompiledRule, rule: PoolShareRule) -> list[Award]:
    months = close.months(cr)
    categories = frozenset(rule.categories) or None
    currency = close.cp.currency
    if rule.pool_fixed is not None:
        pool = rule.pool_fixed
        pool_inputs: dict[str, InputValue] = {"pool_fixed": rule.pool_fixed}
    else:
        assert rule.pool_share_bp is not None
        total_sales = sum(metric_value(s, rule.metric, months, currency, categories)
                          for s in close.states.values())
        pool, pool_rounding = apply_bp(max(total_sales, 0), rule.pool_share_bp)
        pool_inputs = {"all_partners_sales": total_sales, "pool_share_bp": rule.pool_share_bp,
                       "pool_exact": pool_rounding.exact}
    weights_by_tier = {w.tier: w.weight for w in rule.weights}
    people: list[tuple[str, int, int]] = []
    for pid, state in close.partners(cr):
        value = metric_value(state, rule.metric, months, currency, categories)
        if value < rule.min_contribution:
            continue
        weight = weights_by_tier.get(close.tier(state) or "", 1)
        people.append((pid, value, weight))
    if pool <= 0 or not people:
        return []
    weighted = [v * w for _, v, w in people]
    shares = largest_remainder(weighted, pool, [pid for pid, _, _ in people])
    total_weighted = sum(weighted)
    awards: list[Award] = []
    for (pid, value, weight), part, share in zip(people, weighted, shares, strict=True):
        if share <= 0:
            continue
        inputs: dict[str, InputValue] = {
            "period": close.period_key(cr), "pool": pool, "contribution": value,
            "weight": weight, "weighted": part, "weighted_total": total_weighted,
        }
        inputs.update(pool_inputs)
        awards.append(Award(partner_id=pid, rule=cr, asset=cr.asset or "", amount=share,
                            summary=f"Share of the {close.period_key(cr)} pool of {pool}",
                            formula="pool * weighted / weighted_total, largest remainder",
                            inputs=inputs, hold_days=cr.hold_days,
                            rounding=_split_rounding(pool * part, total_weighted, share)))
    return awards


def _split_rounding(numerator: int, denominator: int, share: int) -> Rounding:
    """A largest-remainder share: the exact fraction and the whole units it received."""
    return Rounding(mode="largest_remainder", exact=exact_text(numerator, denominator),
                    result=share)
