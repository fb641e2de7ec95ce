"""Sharing a measured total among the things that caused it, in whole bytes."""

from __future__ import annotations

from collections.abc import Mapping


def apportion(total: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Split `total` in proportion to `weights`, exactly: the largest remainders get the rest."""
    if len(weights) == 1:
        # One share (an idle connection's control frames): all of it, as below would give.
        ((key, weight),) = weights.items()
        return {key: total if total > 0 and weight > 0 else 0}
    weight_sum = sum(weights.values())
    if total <= 0 or weight_sum <= 0:
        return {key: 0 for key in weights}
    shares = {key: total * w // weight_sum for key, w in weights.items()}
    left = total - sum(shares.values())
    by_remainder = sorted(weights, key=lambda k: (total * weights[k]) % weight_sum, reverse=True)
    for key in by_remainder[:left]:
        shares[key] += 1
    return shares
