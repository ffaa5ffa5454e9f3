"""Sentiment of social mentions, English and French: a score in -1..1, a label, and the roll-up a profile shows.

Why our own scorer: the English reference (vaderSentiment) has had no release since 2020 and knows
no French; the French ports on PyPI are alpha code pulling in GPL fuzzy-matching packages. One
algorithm over one lexicon per language keeps English and French scores comparable, and the
lexicon ships in the package (sentiment_lexicon.tsv beside this file), so nothing is downloaded.

How a text is scored (the rules of VADER, Hutto & Gilbert 2014, on our own lexicon):

* Links are dropped; words, emojis and emoticons are looked up in the lexicon of the text's
  language (valences -4..+4). French elisions split (``n'aime`` is ``ne aime``, ``c'est`` is
  ``c' est``); typographic apostrophes count as straight ones.
* Negation flips a word and damps it (x -0.74) when a negator stands within 3 words before it in
  the same clause (not, never, no, n't, without / ne, n', pas, jamais, rien, aucun, sans, ni, and
  ``peu`` when not ``un peu``), or, in French, when ``pas`` or ``jamais`` follows it (spoken French
  drops the ``ne``: "j'aime pas"). So "not bad" and "pas mal" come out mildly positive, which is
  what they mean; "pas mal de monde" ("quite a crowd") is neutral. A few set phrases have their
  own valence (`PHRASES`: "can't wait" is eager, French "pas terrible" means "not great").
  Punctuation ends a clause, so "bon, pas cher" keeps "bon" positive.
* Intensifiers (very, really, so / très, vraiment, trop, tellement...) add 0.293 to the next
  polar word's strength, diminishers (slightly, kinda / un peu) take it off; ``super`` and
  ``bien`` are intensifiers before a polar word and polar words otherwise. A word in capitals in a
  text that is not all capitals is stressed (+0.733). Emojis and emoticons count in any language.
* After "but" / "mais" the words weigh 1.5, before it 0.5. Each "!" (up to 4) adds 0.292.
* The sum s is normalised to s / sqrt(s^2 + 15), in -1..1.

Labels: positive above 0.05, negative below -0.05, neutral between.

Limits: sarcasm ("merci pour rien"), irony and complaints worded without polar words ("nobody
answers") are missed; the listening platform's own score, when it sends one, wins anyway.

Language detection (`detect_language`): counts common function words of each language ("the",
"is", "with" / "le", "est", "avec", "c'", "n'") plus one French point per word with a French
accent; the larger count wins, a tie (such as a text of emojis only) is unknown (None). Unknown
texts are scored with both lexicons together.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

LEXICON_PATH = Path(__file__).with_name("sentiment_lexicon.tsv")
LANGUAGES = ("en", "fr")
POSITIVE_ABOVE = 0.05
NEGATIVE_BELOW = -0.05

NEGATION_SCALAR = -0.74
BOOST = 0.293
CAPS_BOOST = 0.733
EXCLAMATION_BOOST = 0.292
NORMALISATION_ALPHA = 15
BUT_BEFORE, BUT_AFTER = 0.5, 1.5

NEGATORS = {
    "en": {
        "not", "no", "never", "nor", "without", "cannot", "nothing", "none", "neither", "nobody",
        "dont", "doesnt", "didnt", "isnt", "wasnt", "arent", "werent", "cant", "couldnt", "wont",
        "wouldnt", "shouldnt", "aint", "havent", "hasnt", "hadnt",
    },
    "fr": {"ne", "n'", "pas", "jamais", "rien", "aucun", "aucune", "sans", "ni"},
}
# Spoken French drops the "ne" and puts the negation after the verb: "j'aime pas".
FRENCH_AFTER_NEGATORS = {"pas", "jamais"}
BOOSTERS = {
    "en": {
        "very", "really", "so", "extremely", "totally", "absolutely", "incredibly", "truly", "highly",
        "super", "too", "most", "pretty", "damn", "soo", "sooo",
    },
    "fr": {
        "très", "tres", "vraiment", "trop", "tellement", "hyper", "super", "extrêmement", "totalement",
        "absolument", "vachement", "particulièrement", "complètement", "carrément", "bien", "si",
    },
}
DIMINISHERS = {"en": {"slightly", "somewhat", "barely", "kinda", "sorta"}, "fr": {"peu"}}
BUT_WORDS = {"en": {"but"}, "fr": {"mais"}}
# Two-word expressions whose meaning is not the sum of their words; the valence goes on the second
# word and no negation applies to it.
PHRASES = {
    "en": {("can't", "wait"): 2.0, ("cant", "wait"): 2.0, ("no", "worries"): 1.5},
    "fr": {("pas", "terrible"): -1.5, ("sans", "plus"): -0.8},
}
FRENCH_ELISIONS = ("jusqu'", "lorsqu'", "puisqu'", "qu'", "n'", "l'", "d'", "j'", "c'", "m'", "t'", "s'")

STOPWORDS = {
    "en": {
        "the", "and", "is", "are", "was", "were", "be", "been", "i", "you", "he", "she", "it", "we",
        "they", "this", "that", "these", "those", "my", "your", "our", "their", "of", "to", "in",
        "for", "with", "at", "from", "by", "not", "but", "very", "just", "have", "has", "had", "do",
        "does", "did", "it's", "i'm", "can", "will", "would", "what", "which", "who", "there",
        "here", "about", "all", "got", "so", "really", "don't", "didn't", "isn't", "again", "thanks",
    },
    "fr": {
        "le", "la", "les", "un", "une", "des", "du", "de", "et", "est", "je", "tu", "il", "elle",
        "nous", "vous", "ils", "elles", "ce", "cette", "ces", "mon", "ma", "mes", "ton", "ta", "tes",
        "sa", "ses", "au", "aux", "pour", "avec", "dans", "par", "pas", "ne", "très", "mais", "ou",
        "donc", "qui", "que", "c'", "j'", "n'", "l'", "d'", "qu'", "suis", "était", "sont", "chez",
        "votre", "vos", "notre", "nos", "leur", "trop", "aussi", "tout", "merci", "oui", "vraiment",
    },
}
FRENCH_ACCENTS = set("éèêëàâçùûôîïœ")

_URL = re.compile(r"https?://\S+|www\.\S+")
_EMOJI = r"[\U0001F300-\U0001FAFF\u2600-\u27BF\u2B50\u2B55]\uFE0F?"
_WORD = r"[^\W\d_]+(?:'[^\W\d_]+)*"
_PUNCT = r"[.,;:!?()\"]+"


@dataclass(frozen=True)
class MentionSentiment:
    score: float  # -1..1
    label: str  # positive | neutral | negative
    language: str | None  # en | fr | None when unknown
    source: str  # "provider" when the listening platform scored it, else "lexicon"


@dataclass(frozen=True)
class EngagementSummary:
    mentions: int
    positive: int
    neutral: int
    negative: int
    sentiment: float | None  # mean score, -1..1; None without mentions
    satisfaction: float | None  # 0..100; None without mentions


@dataclass(frozen=True)
class _Token:
    text: str  # lower case (emoticons as written)
    kind: str  # word | emoji | punct
    shouted: bool = False


@cache
def _lexicon() -> dict[str, dict[str, float]]:
    lexicon: dict[str, dict[str, float]] = {"en": {}, "fr": {}, "*": {}}
    for line in LEXICON_PATH.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        language, term, valence = line.split("\t")
        lexicon[language][term.replace("\uFE0F", "")] = float(valence)
    return lexicon


@cache
def _emoticon_pattern() -> str:
    emoticons = sorted((t for t in _lexicon()["*"] if not t[0].isalpha() or t in ("xD", "XD")), key=len, reverse=True)
    emoticons = [t for t in emoticons if not re.fullmatch(_EMOJI, t)]
    # Only free-standing emoticons: "https://" must not read as ":/".
    return r"(?<!\S)(?:" + "|".join(re.escape(t) for t in emoticons) + r")(?=\s|$|[.,!?])"


@cache
def _tokenizer() -> re.Pattern[str]:
    return re.compile(f"(?P<emoticon>{_emoticon_pattern()})|(?P<emoji>{_EMOJI})|(?P<word>{_WORD})|(?P<punct>{_PUNCT})")


def _tokens(text: str) -> list[_Token]:
    text = unicodedata.normalize("NFC", _URL.sub(" ", text)).replace("\u2019", "'").replace("`", "'")
    has_lower = any(c.islower() for c in text)
    tokens: list[_Token] = []
    for match in _tokenizer().finditer(text):
        raw = match.group()
        if match.lastgroup == "emoticon":
            tokens.append(_Token(raw, "emoji"))
        elif match.lastgroup == "emoji":
            tokens.append(_Token(raw.replace("\uFE0F", ""), "emoji"))
        elif match.lastgroup == "punct":
            tokens.append(_Token(raw, "punct"))
        else:
            word = raw.lower()
            shouted = has_lower and len(raw) > 1 and raw.isupper()
            for elision in FRENCH_ELISIONS:
                if word.startswith(elision) and len(word) > len(elision):
                    tokens.append(_Token(elision, "word"))
                    word = word[len(elision) :]
                    break
            tokens.append(_Token(word, "word", shouted))
    return tokens


def detect_language(text: str) -> str | None:
    """"en", "fr", or None when the text gives no clue either way (see the module docstring)."""
    words = [t.text for t in _tokens(text) if t.kind == "word"]
    hits = {language: sum(w in STOPWORDS[language] for w in words) for language in LANGUAGES}
    hits["fr"] += sum(any(c in FRENCH_ACCENTS for c in w) for w in words)
    if hits["en"] == hits["fr"]:
        return None
    return max(hits, key=hits.__getitem__)


def label_for(score: float) -> str:
    if score > POSITIVE_ABOVE:
        return "positive"
    if score < NEGATIVE_BELOW:
        return "negative"
    return "neutral"


@cache
def _rules(
    language: str | None,
) -> tuple[dict[str, float], dict[tuple[str, str], float], set[str], set[str], set[str], set[str]]:
    languages = LANGUAGES if language is None else (language,)
    words: dict[str, float] = {}
    phrases: dict[tuple[str, str], float] = {}
    negators: set[str] = set()
    boosters: set[str] = set()
    diminishers: set[str] = set()
    buts: set[str] = set()
    for lang in languages:
        words.update(_lexicon()[lang])
        phrases.update(PHRASES[lang])
        negators |= NEGATORS[lang]
        boosters |= BOOSTERS[lang]
        diminishers |= DIMINISHERS[lang]
        buts |= BUT_WORDS[lang]
    return words, phrases, negators, boosters, diminishers, buts


def _is_negator(tokens: list[_Token], j: int, negators: set[str]) -> bool:
    word = tokens[j].text
    if word == "peu":  # "peu aimable" is "unfriendly", "un peu lent" only "a bit slow"
        return not (j > 0 and tokens[j - 1].text == "un")
    return word in negators or word.endswith("n't")


def text_score(text: str, language: str | None = None) -> float:
    """The -1..1 sentiment of a text by the lexicon rules above; `language` None means detect it."""
    if language is None:
        language = detect_language(text)
    french = language in (None, "fr")
    words, phrases, negators, boosters, diminishers, buts = _rules(language)
    emojis = _lexicon()["*"]
    tokens = _tokens(text)
    valences = [0.0] * len(tokens)

    clause_start = 0
    for i, token in enumerate(tokens):
        if token.kind == "punct":
            clause_start = i + 1
            continue
        if token.kind == "emoji":
            valences[i] = emojis.get(token.text, 0.0)
            continue
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        previous = tokens[i - 1].text if i > clause_start else None
        if previous is not None and (previous, token.text) in phrases:
            valences[i] = phrases[previous, token.text]  # "can't wait", "pas terrible" (French for "not great")
            continue
        valence = words.get(token.text)
        if valence is None:
            continue
        if token.text in boosters and following is not None and following.text in words:
            continue  # "super bon", "bien fait": an intensifier here
        if following is not None and (token.text, following.text) in (("kind", "of"), ("sort", "of")):
            continue  # "kind of" is a hedge, not kindness
        if french and previous == "pas" and token.text == "mal" and following is not None:
            after = tokens[i + 2].text if i + 2 < len(tokens) else None
            if following.text in ("de", "d'", "du", "des") and (following.text, after) != ("du", "tout"):
                continue  # "pas mal de monde": quite a lot of people ("pas mal du tout" is "not bad at all")
        sign = 1.0 if valence > 0 else -1.0
        if token.shouted:
            valence += sign * CAPS_BOOST
        for distance, j in enumerate(range(i - 1, max(clause_start, i - 3) - 1, -1)):
            decay = (1.0, 0.95, 0.9)[distance]
            if tokens[j].text in boosters:
                valence += sign * BOOST * decay
            elif tokens[j].text in diminishers and not _is_negator(tokens, j, negators):
                valence -= sign * BOOST * decay
        window = range(max(clause_start, i - 3), i)
        negated = any(_is_negator(tokens, j, negators) for j in window)
        if french and following is not None and following.kind == "word" and following.text in FRENCH_AFTER_NEGATORS:
            negated = True
        valences[i] = valence * NEGATION_SCALAR if negated else valence

    but_at = [i for i, t in enumerate(tokens) if t.kind == "word" and t.text in buts]
    if but_at:
        last = but_at[-1]
        valences = [v * (BUT_BEFORE if i < last else BUT_AFTER) for i, v in enumerate(valences)]

    total = sum(valences)
    if total:
        exclamations = min(text.count("!"), 4)
        total += math.copysign(EXCLAMATION_BOOST * exclamations, total)
    score = total / math.sqrt(total * total + NORMALISATION_ALPHA)
    return round(max(-1.0, min(1.0, score)), 4)


def score_mention(text: str | None, provided_score: float | None = None) -> MentionSentiment:
    """A mention's sentiment: the listening platform's score when it sent one, else ours from the text.

    `provided_score` must already be on the -1..1 scale (the provider adapter converts); it is
    clamped to that range, and a NaN counts as not provided.
    """
    language = detect_language(text) if text else None
    if provided_score is not None and math.isfinite(provided_score):
        score = round(max(-1.0, min(1.0, float(provided_score))), 4)
        return MentionSentiment(score, label_for(score), language, "provider")
    score = text_score(text, language) if text else 0.0
    return MentionSentiment(score, label_for(score), language, "lexicon")


# Satisfaction starts from PRIOR positive and PRIOR negative mentions, so it moves away from 50
# only as evidence piles up: one happy mention gives 60, ten give 85.7, a hundred 98.
SATISFACTION_PRIOR = 2.0


def satisfaction(positive: int, neutral: int, negative: int) -> float | None:
    """0-100: the smoothed share of satisfied mentions, a neutral one counting as half; None without mentions.

    satisfaction = 100 * (positive + neutral / 2 + 2) / (positive + neutral + negative + 4)
    """
    mentions = positive + neutral + negative
    if mentions == 0:
        return None
    satisfied = positive + neutral / 2 + SATISFACTION_PRIOR
    return round(100 * satisfied / (mentions + 2 * SATISFACTION_PRIOR), 1)


def summarize(scores: Iterable[float]) -> EngagementSummary:
    """The profile's `engagement` block from the scores of a contact's mentions."""
    scores = list(scores)
    labels = [label_for(s) for s in scores]
    positive, neutral, negative = (labels.count(label) for label in ("positive", "neutral", "negative"))
    mean = round(sum(scores) / len(scores), 4) if scores else None
    return EngagementSummary(
        mentions=len(scores),
        positive=positive,
        neutral=neutral,
        negative=negative,
        sentiment=mean,
        satisfaction=satisfaction(positive, neutral, negative),
    )
