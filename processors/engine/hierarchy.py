"""The distribution hierarchy (分销模式): who supplies whom, from ``parent_partner_id``.

Every partner knows only its own parent (``Profile.parent``, from PartnerRegistered and
PartnerUpdated), so the tree is built at a period close, where every partner's state is at
hand, as it stands then. A cycle (A's parent B, B's parent A, as two updates could make)
is cut where a walk meets a partner it has already seen: each partner counts once below
another, and never below itself.
"""

from collections.abc import Mapping
from typing import NamedTuple

from processors.engine.state import PartnerState


class Below(NamedTuple):
    """A partner below another: how many levels down, and the path from the top."""

    partner_id: str
    level: int  # 1: a child, 2: a grandchild, ...
    path: tuple[str, ...]  # from the partner above (first) to this one (last)


def children_of(states: Mapping[str, PartnerState]) -> dict[str, list[str]]:
    """Parent id -> its children's ids, ascending."""
    children: dict[str, list[str]] = {}
    for pid in sorted(states):
        profile = states[pid].profile
        if profile is not None and profile.parent is not None and profile.parent != pid:
            children.setdefault(profile.parent, []).append(pid)
    return children


def below(children: Mapping[str, list[str]], top: str, levels: int | None = None,
          stop: frozenset[str] = frozenset()) -> list[Below]:
    """The partners below ``top``, level by level (within a level by parent, then by
    ascending id: a fixed order), down to ``levels`` (None: all the way). Partners in
    ``stop`` are left out with everything below them."""
    seen = {top} | stop
    found: list[Below] = []
    frontier = [Below(top, 0, (top,))]
    while frontier and (levels is None or frontier[0].level < levels):
        nxt: list[Below] = []
        for node in frontier:
            for child in children.get(node.partner_id, ()):
                if child in seen:
                    continue
                seen.add(child)
                nxt.append(Below(child, node.level + 1, (*node.path, child)))
        found += nxt
        frontier = nxt
    return found
