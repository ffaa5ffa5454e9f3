"""Sentiment of English and French mentions, and the engagement roll-up of a profile."""

import pytest

from services.enrichment.sentiment import (
    LEXICON_PATH,
    detect_language,
    label_for,
    satisfaction,
    score_mention,
    summarize,
    text_score,
)

CLEAR_POSITIVES = [
    "I love this shop, the staff is so friendly!",
    "Amazing service, my order arrived in two days. Highly recommend @acme",
    "Thanks @acme, the new app is fast and easy to use",
    "Service très rapide et personnel adorable, merci !",
    "J'adore la nouvelle collection, vraiment magnifique",
    "Commande reçue hier, emballage nickel. Je recommande !",
    "Super produit, très content de mon achat",
]
CLEAR_NEGATIVES = [
    "Worst customer service ever. Never again",
    "My package arrived broken and nobody answers, so disappointed",
    "@acme this is a scam, I want a refund",
    "Livraison en retard et colis abîmé, vraiment déçu",
    "Service client nul, personne ne répond depuis une semaine",
    "Je déteste la nouvelle appli, elle est lente et plante tout le temps",
    "Franchement c'est une arnaque, fuyez",
]
NEUTRALS = [
    "The package arrived yesterday.",
    "La commande est arrivée ce matin.",
    "Is the shop on Main Street open on Sunday?",
    "Votre magasin est ouvert dimanche ?",
]


@pytest.mark.parametrize("text", CLEAR_POSITIVES)
def test_clear_positive_mentions(text):
    result = score_mention(text)
    assert result.label == "positive"
    assert result.score > 0.3
    assert result.source == "lexicon"


@pytest.mark.parametrize("text", CLEAR_NEGATIVES)
def test_clear_negative_mentions(text):
    result = score_mention(text)
    assert result.label == "negative"
    assert result.score < -0.3


@pytest.mark.parametrize("text", NEUTRALS)
def test_factual_mentions_are_neutral(text):
    assert score_mention(text).label == "neutral"


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("The food is not good", "negative"),
        ("It is NOT good", "negative"),
        ("I don't like the new logo", "negative"),
        ("never disappointed by this brand", "positive"),
        ("no problem at all, thanks", "positive"),
        ("Ce n'est pas bon", "negative"),
        ("Je n'aime pas du tout ce produit", "negative"),
        ("J'aime pas", "negative"),  # spoken French, no "ne"
        ("Ce n'est jamais décevant", "positive"),
        ("Pas de souci, merci", "positive"),
        ("Un accueil pas terrible", "negative"),  # French for "not great"
        ("Personnel peu aimable", "negative"),  # "peu" before an adjective negates it
        ("Bon, pas cher", "positive"),  # punctuation ends the negation's reach
    ],
)
def test_negations(text, label):
    assert score_mention(text).label == label


def test_not_bad_and_pas_mal_are_mildly_positive():
    for text in ("not bad", "pas mal", "C'est pas mal du tout"):
        score = score_mention(text).score
        assert 0.05 < score < 0.6, (text, score)


def test_set_phrases_have_their_own_meaning():
    assert score_mention("Can’t wait to try the new menu!").label == "positive"
    assert score_mention("Correct, sans plus").label == "negative"
    assert score_mention("no worries, thanks for the quick answer").label == "positive"


def test_pas_mal_de_means_quite_a_lot_and_is_neutral():
    assert score_mention("Il y avait pas mal de monde ce matin").label == "neutral"


def test_intensifiers_and_diminishers_change_strength_not_direction():
    assert text_score("The staff was very helpful", "en") > text_score("The staff was helpful", "en") > 0
    assert text_score("Un service vraiment lent", "fr") < text_score("Un service lent", "fr") < 0
    assert text_score("un peu lent", "fr") > text_score("lent", "fr")
    assert text_score("un peu lent", "fr") < 0


def test_but_shifts_the_weight_to_what_follows():
    assert score_mention("Great product but the delivery was awful").label == "negative"
    assert score_mention("Livraison lente mais produit excellent").label == "positive"


def test_emojis_and_emoticons_count_in_any_language():
    assert score_mention("😍😍").label == "positive"
    assert score_mention("👎").label == "negative"
    assert score_mention("Commande reçue 😡").label == "negative"
    assert score_mention("got my order :)").label == "positive"
    assert score_mention("still waiting :(").label == "negative"
    assert score_mention("merci ❤️").score > score_mention("merci").score


def test_links_do_not_read_as_emoticons():
    assert score_mention("our new store https://example.com/stores/paris").label == "neutral"


def test_exclamation_marks_strengthen():
    assert text_score("Great!!!", "en") > text_score("Great", "en")


def test_scores_stay_within_minus_one_and_one():
    long_rant = " ".join(["terrible awful horrible worst 😡"] * 50)
    long_praise = " ".join(["excellent génial amazing love 😍"] * 50)
    assert -1 <= text_score(long_rant) < -0.99
    assert 0.99 < text_score(long_praise) <= 1


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("I love this shop, the staff is so friendly!", "en"),
        ("The package arrived yesterday.", "en"),
        ("Is it open on Sunday?", "en"),
        ("Je n'aime pas du tout ce produit", "fr"),
        ("Votre magasin est ouvert dimanche ?", "fr"),
        ("Livraison en retard et colis abîmé", "fr"),
        ("C'est pas mal", "fr"),
        ("😍😍", None),
        ("", None),
    ],
)
def test_language_detection(text, language):
    assert detect_language(text) == language


def test_typographic_apostrophes_are_understood():
    assert score_mention("Je n’aime pas").label == "negative"
    assert score_mention("I don’t like it").label == "negative"


def test_the_listening_platforms_score_wins_over_ours():
    result = score_mention("I love it, thanks!", provided_score=-0.4)
    assert result.score == -0.4
    assert result.label == "negative"
    assert result.source == "provider"
    assert score_mention("whatever", provided_score=3.0).score == 1.0  # clamped
    assert score_mention("I love it", provided_score=float("nan")).source == "lexicon"
    assert score_mention(None, provided_score=0.2).label == "positive"


def test_a_mention_without_text_and_score_is_neutral():
    result = score_mention(None)
    assert (result.score, result.label, result.source) == (0.0, "neutral", "lexicon")


def test_label_thresholds():
    assert label_for(0.0501) == "positive"
    assert label_for(0.05) == "neutral"
    assert label_for(-0.05) == "neutral"
    assert label_for(-0.0501) == "negative"


def test_satisfaction_is_smoothed_so_one_mention_does_not_give_100():
    assert satisfaction(0, 0, 0) is None
    assert satisfaction(1, 0, 0) == 60.0
    assert satisfaction(0, 0, 1) == 40.0
    assert satisfaction(10, 0, 0) == pytest.approx(85.7)
    assert satisfaction(100, 0, 0) > 98
    assert satisfaction(0, 10, 0) == 50.0  # neutral mentions count as half satisfied
    assert satisfaction(5, 0, 5) == 50.0
    for positive in range(0, 30):
        assert satisfaction(positive, 3, 4) < satisfaction(positive + 1, 3, 4)
        assert satisfaction(4, 3, positive) > satisfaction(4, 3, positive + 1)


def test_summary_counts_labels_and_averages_the_scores():
    summary = summarize([0.8, 0.6, 0.0, -0.5])
    assert (summary.mentions, summary.positive, summary.neutral, summary.negative) == (4, 2, 1, 1)
    assert summary.sentiment == pytest.approx(0.225)
    assert summary.satisfaction == satisfaction(2, 1, 1)
    empty = summarize([])
    assert (empty.mentions, empty.sentiment, empty.satisfaction) == (0, None, None)


def test_lexicon_ships_in_the_package_with_hundreds_of_words_per_language():
    rows = [line.split("\t") for line in LEXICON_PATH.read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#")]
    assert all(len(row) == 3 and -4 <= float(row[2]) <= 4 for row in rows)
    by_language = {lang: sum(1 for row in rows if row[0] == lang) for lang in ("en", "fr", "*")}
    assert by_language["en"] >= 200 and by_language["fr"] >= 200 and by_language["*"] >= 50
