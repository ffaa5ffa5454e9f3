"""How much a contact's voice carries on social networks: engagement rate, a 0-100 score, a tier.

Pure domain code: numbers in, numbers out, no I/O.

Engagement rate
    A fraction (0.034 means 3.4 %): interactions (likes + comments + shares) per post divided by
    followers. A rate measured by the provider wins over one computed here, since the provider
    usually averages over more posts than a profile fetch returns.

Tier (by followers, lower bound included, upper bound excluded)
    ======  ==================================
    none    followers < 1,000
    nano    1,000 <= followers < 10,000
    micro   10,000 <= followers < 100,000
    macro   100,000 <= followers < 1,000,000
    mega    followers >= 1,000,000
    ======  ==================================

Score (0-100), in points a marketer can add up
    * reach, up to 60 points: 12 points per power of ten above 100 followers (100 -> 0, 1k -> 12,
      10k -> 24, 100k -> 36, 1M -> 48, 10M and more -> 60).
    * engagement, up to 30 points: the engagement rate against the rate typical for an audience
      of that size, 5 % at 1k followers falling to about 1.8 % at 1M (`typical_engagement_rate`).
      A typical rate earns 15 points, twice the typical rate or better earns 30, none earns 0.
    * activity, up to 10 points: 0.5 point per post a month, full at 20 posts a month.
    * engagement and activity count in full from 1,000 followers and in proportion below, so a
      50-follower account with a few eager friends stays a small voice.
    * follow-back penalty: an account following more people than follow it (a typical
      follow-for-follow pattern) has its score multiplied by sqrt(followers / following), never
      below 0.5.
    * Unknown inputs (None) count as ordinary: an unknown engagement rate as the typical one,
      unknown posting as 10 posts a month, unknown following as no penalty. Unknown followers
      means no score at all (every field None but what is known).

    At a fixed engagement rate the score never falls when followers grow; at fixed followers it
    never falls when the engagement rate or the posting grows. (With a fixed number of
    interactions per post, more followers means a lower rate: bought followers do not pay.)

Example accounts:

>>> for f, following, posts, rate in [
...     (300, 900, 4, 0.06),            # a customer with a private-ish account
...     (2_500, 400, 12, 0.05),         # nano, engaged local foodie
...     (2_500, 7_000, 30, 0.004),      # nano, follow-back account, little engagement
...     (45_000, 800, 15, 0.03),        # micro creator
...     (450_000, 1_200, 25, 0.012),    # macro
...     (3_000_000, 500, 40, 0.02),     # mega celebrity, well engaged
...     (3_000_000, None, None, None),  # mega, only the follower count known
... ]:
...     print(compute_influence(f, following, posts, engagement_rate=rate))
Influence(followers=300, following=900, posts_per_month=4, engagement_rate=0.06, score=6.8, tier='none')
Influence(followers=2500, following=400, posts_per_month=12, engagement_rate=0.05, score=40.0, tier='nano')
Influence(followers=2500, following=7000, posts_per_month=30, engagement_rate=0.004, score=16.8, tier='nano')
Influence(followers=45000, following=800, posts_per_month=15, engagement_rate=0.03, score=55.3, tier='micro')
Influence(followers=450000, following=1200, posts_per_month=25, engagement_rate=0.012, score=62.8, tier='macro')
Influence(followers=3000000, following=500, posts_per_month=40, engagement_rate=0.02, score=83.7, tier='mega')
Influence(followers=3000000, following=None, posts_per_month=None, engagement_rate=None, score=73.7, tier='mega')
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

TIERS = ("none", "nano", "micro", "macro", "mega")
# Lower bound of each tier but "none", in followers, included in the tier.
TIER_FLOORS = (("mega", 1_000_000), ("macro", 100_000), ("micro", 10_000), ("nano", 1_000))

REACH_POINTS = 60.0
ENGAGEMENT_POINTS = 30.0
ACTIVITY_POINTS = 10.0
FULL_ACTIVITY_POSTS = 20.0  # posts a month that earn the full activity points
ASSUMED_POSTS_PER_MONTH = 10.0
MIN_FOLLOW_BACK_FACTOR = 0.5


@dataclass(frozen=True)
class Influence:
    followers: int | None
    following: int | None
    posts_per_month: float | None
    engagement_rate: float | None
    score: float | None
    tier: str | None


@dataclass(frozen=True)
class NetworkFigures:
    """What one network says about one account (any field may be unknown)."""

    network: str
    followers: int | None = None
    following: int | None = None
    posts_per_month: float | None = None
    interactions_per_post: float | None = None  # likes + comments + shares
    engagement_rate: float | None = None  # as measured by the provider, a fraction


def tier_for(followers: int | None) -> str | None:
    """The tier for a follower count; None when the count is unknown."""
    if followers is None:
        return None
    for tier, floor in TIER_FLOORS:
        if followers >= floor:
            return tier
    return "none"


def engagement_rate_of(
    followers: int | None, interactions_per_post: float | None, provided_rate: float | None = None
) -> float | None:
    """The engagement rate as a fraction: the provider's if given, else interactions / followers."""
    if provided_rate is not None and math.isfinite(provided_rate):
        return max(0.0, float(provided_rate))
    if interactions_per_post is None or not followers or followers <= 0:
        return None
    return max(0.0, float(interactions_per_post)) / followers


def typical_engagement_rate(followers: int) -> float:
    """The engagement rate usual for an audience this size: 5 % at 1k followers, x0.71 per power of ten.

    Bigger audiences engage less (nano about 4-5 %, micro 2.5-3.5 %, macro about 2 %, mega under
    2 %); a continuous curve rather than one figure per tier keeps the score free of jumps at the
    tier boundaries.
    """
    return 0.05 * (max(followers, 1_000) / 1_000) ** -0.15


def influence_score(
    followers: int | None,
    following: int | None = None,
    posts_per_month: float | None = None,
    engagement_rate: float | None = None,
) -> float | None:
    """The 0-100 score described in the module docstring, rounded to one decimal; None without followers."""
    if followers is None:
        return None
    followers = max(0, int(followers))
    reach = min(max((math.log10(followers) - 2) / 5, 0.0), 1.0) if followers > 0 else 0.0

    typical = typical_engagement_rate(followers)
    rate = typical if engagement_rate is None or not math.isfinite(engagement_rate) else max(0.0, engagement_rate)
    engagement = min(rate / typical, 2.0) / 2

    posts = ASSUMED_POSTS_PER_MONTH if posts_per_month is None else max(0.0, float(posts_per_month))
    activity = min(posts / FULL_ACTIVITY_POSTS, 1.0)

    audience = min(followers / TIER_FLOORS[-1][1], 1.0)
    points = REACH_POINTS * reach + audience * (ENGAGEMENT_POINTS * engagement + ACTIVITY_POINTS * activity)

    if following is not None and following > followers:
        points *= max(MIN_FOLLOW_BACK_FACTOR, math.sqrt(followers / following))
    return round(min(max(points, 0.0), 100.0), 1)


def compute_influence(
    followers: int | None,
    following: int | None = None,
    posts_per_month: float | None = None,
    *,
    interactions_per_post: float | None = None,
    engagement_rate: float | None = None,
) -> Influence:
    """Everything the profile's `influence` block shows, from one account's figures."""
    rate = engagement_rate_of(followers, interactions_per_post, engagement_rate)
    return Influence(
        followers=followers,
        following=following,
        posts_per_month=posts_per_month,
        engagement_rate=None if rate is None else round(rate, 6),
        score=influence_score(followers, following, posts_per_month, rate),
        tier=tier_for(followers),
    )


def _sum_known(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def combine_networks(figures: Iterable[NetworkFigures]) -> Influence:
    """One contact's influence across networks.

    Reach, following and posting add up (the same fan following on two networks counts twice:
    providers do not tell audience overlap, and each network is a separate channel to reach).
    The engagement rate is the follower-weighted mean of the networks whose rate is known, i.e.
    total interactions over the followers they came from, so a small very engaged network does
    not outweigh a big one.
    """
    figures = list(figures)
    followers = _sum_known(f.followers for f in figures)
    following = _sum_known(f.following for f in figures)
    posts = _sum_known(f.posts_per_month for f in figures)

    weighted = 0.0
    weight = 0
    for f in figures:
        rate = engagement_rate_of(f.followers, f.interactions_per_post, f.engagement_rate)
        if rate is not None and f.followers:
            weighted += rate * f.followers
            weight += f.followers
    rate = weighted / weight if weight else None
    return compute_influence(
        None if followers is None else int(followers),
        None if following is None else int(following),
        posts,
        engagement_rate=rate,
    )
