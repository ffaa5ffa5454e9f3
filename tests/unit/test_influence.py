"""Influence: tiers, engagement rate, the 0-100 score and several networks combined."""

import doctest

import pytest

from services.enrichment import influence
from services.enrichment.influence import (
    NetworkFigures,
    combine_networks,
    compute_influence,
    engagement_rate_of,
    influence_score,
    tier_for,
)


@pytest.mark.parametrize(
    ("followers", "tier"),
    [
        (0, "none"),
        (999, "none"),
        (1_000, "nano"),
        (9_999, "nano"),
        (10_000, "micro"),
        (99_999, "micro"),
        (100_000, "macro"),
        (999_999, "macro"),
        (1_000_000, "mega"),
        (250_000_000, "mega"),
        (None, None),
    ],
)
def test_tier_boundaries(followers, tier):
    assert tier_for(followers) == tier


def test_the_examples_in_the_module_docstring_hold():
    result = doctest.testmod(influence, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 1
    assert result.failed == 0


def test_engagement_rate_is_interactions_over_followers_unless_the_provider_measured_it():
    assert engagement_rate_of(10_000, 350) == pytest.approx(0.035)
    assert engagement_rate_of(10_000, 350, provided_rate=0.05) == 0.05
    assert engagement_rate_of(None, 350) is None
    assert engagement_rate_of(0, 350) is None
    assert engagement_rate_of(10_000, None) is None
    assert compute_influence(20_000, interactions_per_post=600).engagement_rate == pytest.approx(0.03)


FOLLOWER_STEPS = [0, 1, 10, 50, 100, 500, 999, 1_000, 2_000, 5_000, 9_999, 10_000, 30_000, 99_999, 100_000,
                  400_000, 999_999, 1_000_000, 5_000_000, 10_000_000, 50_000_000, 500_000_000]
RATES = [None, 0.0, 0.001, 0.005, 0.01, 0.02, 0.04, 0.08, 0.2, 1.5]
POSTS = [None, 0, 1, 5, 20, 100]
FOLLOWING = [None, 0, 200, 5_000, 80_000]


def test_score_never_falls_when_followers_grow_at_a_given_engagement_rate():
    for rate in RATES:
        for posts in POSTS:
            for following in FOLLOWING:
                scores = [influence_score(f, following, posts, rate) for f in FOLLOWER_STEPS]
                assert scores == sorted(scores), (rate, posts, following, scores)


def test_score_never_falls_when_engagement_or_posting_grows():
    known_rates = [r for r in RATES if r is not None]
    known_posts = [p for p in POSTS if p is not None]
    for followers in FOLLOWER_STEPS:
        for following in FOLLOWING:
            by_rate = [influence_score(followers, following, 10, r) for r in known_rates]
            assert by_rate == sorted(by_rate), (followers, following, by_rate)
            by_posts = [influence_score(followers, following, p, 0.02) for p in known_posts]
            assert by_posts == sorted(by_posts), (followers, following, by_posts)


def test_score_stays_within_0_and_100():
    for followers in FOLLOWER_STEPS:
        for rate in RATES:
            for posts in POSTS:
                for following in FOLLOWING:
                    score = influence_score(followers, following, posts, rate)
                    assert 0 <= score <= 100


def test_huge_engaged_active_account_reaches_100_and_an_empty_one_0():
    assert influence_score(50_000_000, 10, 60, 0.5) == 100
    assert influence_score(0, 0, 0, 0.0) == 0


def test_follow_back_accounts_score_lower_than_the_same_account_with_a_real_audience():
    genuine = influence_score(5_000, 300, 20, 0.01)
    follow_back = influence_score(5_000, 20_000, 20, 0.01)
    assert follow_back < genuine
    assert follow_back >= genuine * 0.5  # the penalty is bounded


def test_bought_followers_lower_the_engagement_rate_and_the_score_per_follower():
    real = compute_influence(20_000, 500, 15, interactions_per_post=800)
    inflated = compute_influence(200_000, 500, 15, interactions_per_post=800)  # same interactions
    assert inflated.engagement_rate < real.engagement_rate
    assert inflated.tier == "macro"
    assert inflated.score < real.score * 10


def test_missing_inputs_give_a_score_when_followers_are_known_and_none_otherwise():
    unknown = compute_influence(None)
    assert unknown.score is None and unknown.tier is None and unknown.engagement_rate is None
    only_followers = compute_influence(12_000)
    assert only_followers.tier == "micro"
    assert 0 < only_followers.score < 100
    assert only_followers.engagement_rate is None
    # Unknown engagement counts as typical: between a poorly and a well engaged account.
    assert influence_score(12_000, None, 10, 0.001) < only_followers.score < influence_score(12_000, None, 10, 0.2)


def test_nan_engagement_rate_counts_as_unknown():
    assert influence_score(12_000, 100, 10, float("nan")) == influence_score(12_000, 100, 10, None)


def test_networks_combine_by_summing_reach_and_weighting_engagement_by_followers():
    combined = combine_networks(
        [
            NetworkFigures("instagram", followers=90_000, following=600, posts_per_month=12, engagement_rate=0.01),
            NetworkFigures("tiktok", followers=10_000, following=100, posts_per_month=8, interactions_per_post=1_000),
            NetworkFigures("linkedin", followers=None, following=None),
        ]
    )
    assert combined.followers == 100_000
    assert combined.tier == "macro"
    assert combined.following == 700
    assert combined.posts_per_month == 20
    # (0.01 * 90k + 0.10 * 10k) / 100k: the small, very engaged network does not dominate.
    assert combined.engagement_rate == pytest.approx(0.019)
    single = compute_influence(100_000, 700, 20, engagement_rate=0.019)
    assert combined.score == single.score


def test_combining_nothing_known_gives_no_score():
    combined = combine_networks([NetworkFigures("x"), NetworkFigures("facebook")])
    assert combined.followers is None and combined.score is None and combined.tier is None
    assert combine_networks([]).score is None
