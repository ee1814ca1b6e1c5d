"""The training corpus's sentences: a small grammar over word lists (no download, no licence question), and with
``broad_fraction`` > 0 a second grammar over the broad English word lists that ship inside the ``wonderwords``
package, split into training sentences, held-out sentences of training words, and held-out sentences that each
contain a word never used in training (``Sentences``)."""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["NOUNS", "ADJECTIVES", "VERBS", "Sentences", "make_sentences", "broad_words", "join_sentences"]

NOUNS = """apple river window garden teacher doctor engine village kettle lantern blanket mountain station letter
market harbour bicycle candle basket pocket ladder hammer jacket kitten rabbit pencil bottle castle forest island
meadow office palace pillow ribbon saddle silver spider stable ticket tunnel wagon wallet button carpet cottage
dragon feather fountain giant helmet honey insect jungle lemon monkey needle orange parrot piano puzzle rocket
sailor shadow singer spoon stone storm sugar table tiger tomato tower train turtle valley violin water whistle
winter wizard yellow anchor banner barrel beacon biscuit bridge cabin camera canoe captain carrot cellar chimney
circus cloud coffee copper crystal curtain desert diamond dinner drawer farmer fence field finger flower garage
glove guitar hill horse hotel kitchen lamp lawyer library lion machine mirror motor museum nurse ocean oven
painter paper pepper picture pilot planet pond potato printer queen radio road robot roof school shirt shovel
soldier sparrow square squirrel student summer sweater theatre thunder tractor truck uncle umbrella vase wheel
whale wolf worker zebra author baker butcher chapter cousin dentist engineer falcon goose hunter judge lobster
magnet marble novel orchard pebble pirate quarter rainbow scholar sheriff spinach statue surgeon tailor tulip
walrus witness""".split()
ADJECTIVES = """small large bright dark quiet noisy happy sad early late heavy light warm cold young old busy
lazy brave gentle clever silly tall short narrow wide quick slow soft hard clean dirty empty full fresh stale
golden wooden purple orange friendly angry careful hungry thirsty sleepy strange famous simple rough smooth
sharp round square shiny dusty frozen hidden lucky tiny enormous ancient modern curious polite proud calm wild
rusty muddy sunny windy foggy sticky crooked fragile nervous patient""".split()
VERBS = (  # (base, past)
    "carry carried|paint painted|clean cleaned|open opened|close closed|watch watched|follow followed|"
    "find found|bring brought|build built|catch caught|draw drew|fix fixed|hide hid|hold held|keep kept|"
    "lift lifted|move moved|pull pulled|push pushed|sell sold|send sent|show showed|take took|throw threw|"
    "wash washed|visit visited|count counted|borrow borrowed|measure measured|polish polished|repair repaired|"
    "describe described|remember remembered|deliver delivered|discover discovered|protect protected|"
    "cover covered|fill filled|drop dropped|pack packed|order ordered|collect collected|check checked|"
    "mention mentioned|study studied|test tested|print printed|weigh weighed|photograph photographed"
)
VERB_PAIRS = [tuple(pair.split()) for pair in VERBS.split("|")]
INTRANSITIVE = (  # (base, past)
    "laugh laughed|smile smiled|wait waited|sleep slept|run ran|sing sang|dance danced|shout shouted|"
    "arrive arrived|travel travelled|whisper whispered|listen listened|rest rested|swim swam|climb climbed"
)
INTRANSITIVE_PAIRS = [tuple(pair.split()) for pair in INTRANSITIVE.split("|")]
ADVERBS = """slowly quickly quietly loudly carefully happily suddenly gently barely nearly always rarely often
early softly bravely calmly""".split()
NAMES = """Anna Ben Clara David Emma Frank Grace Henry Isla Jack Kate Leo Maria Nathan Olivia Peter Rosa Sam
Thomas Uma Victor Wendy Oscar Lucy Martin Helen George Alice Daniel Sophie""".split()
PLACES = """the station|the market|the river|the old castle|the library|the harbour|the village square|the kitchen|
the garden|the museum|the farm|the school|the forest|the hotel|the office""".replace("\n", "").split("|")
TIMES = """today|yesterday|tomorrow|last night|this morning|on Monday|on Friday|after lunch|before dinner|
in the evening|at noon|next week|every day|at seven o'clock|in the spring""".replace("\n", "").split("|")
PREPOSITIONS = "near|behind|under|beside|inside|above|across|around|beyond|below".split("|")

TEMPLATES = (
    "The {adj} {noun} {verb_past} the {noun2} {prep} {place}.",
    "{name} {verb_past} {a_adj_noun} {time}.",
    "Did {name} {verb} the {noun} {prep} {place}?",
    "We will {verb} {number} {nouns} {time}.",
    "The {noun} was {adverb} {adj}, but the {noun2} was not.",
    "Please {verb} the {adj} {noun} before {time2}.",
    "How many {nouns} did the {noun2} {verb}?",
    "There are {number} {adj} {nouns} {prep} {place}.",
    "I think {name} can {verb} {a_adj_noun}.",
    "{name} and {name2} {intrans_past} {adverb} {prep} the {noun}.",
    "Why is the {noun} so {adj} {time}?",
    "My {noun} {intrans_past} while the {adj} {noun2} {verb_past} {a_noun}.",
    "The {noun} {intrans_past} {adverb}.",
    "{name} said that the {noun} is {adj}.",
    "After {time2}, the {adj} {noun} {verb_past} {number} {nouns}.",
    "Where did you {verb} the {adj} {noun}, {name}?",
)


# The second grammar: base-form verbs only (the broad list has no past tenses), with "-ing" forms from inflect.
BROAD_TEMPLATES = (
    "The {adj} {noun} can {verb} the {noun2}.",
    "Would you {verb} {a_adj_noun} for {name}?",
    "{name} wants to {verb} the {adj} {noun} {time}.",
    "Nobody will {verb} {number} {adj} {nouns} {prep} {place}.",
    "It is {adj} to {verb} {a_noun} {time}.",
    "Should we {verb} the {noun} or the {noun2}?",
    "The {nouns} are {adverb} {adj} {prep} the {noun2}.",
    "{name} is {verb_ing} the {adj} {noun}.",
    "Let us {verb} every {noun} and {verb2} the {adj2} {nouns2}.",
    "I never {verb} {a_adj_noun} on {a_adj2} day.",
    "Is the {noun} {adj} or {adj2}?",
    "They were {verb_ing} {number} {nouns} when the {noun2} began to {verb2}.",
    "A {adj} {noun} does not {verb} {adverb}.",
    "{name} asked me to {verb} the {noun} before {time2}.",
)


@dataclass
class Sentences:
    """A seeded draw of sentences: ``train``; ``held_out`` (training words only); ``unseen`` (each has a word that
    no training sentence uses, listed in ``unseen_words``)."""

    train: list[str]
    held_out: list[str]
    unseen: list[str]
    unseen_words: list[str] = field(default_factory=list)


@functools.lru_cache(maxsize=1)
def _inflect_engine():
    import inflect

    return inflect.engine()


def _sentence(rng: random.Random, nouns: list[str], adjectives: list[str]) -> str:
    engine = _inflect_engine()
    noun, noun2 = rng.choice(nouns), rng.choice(nouns)
    adj = rng.choice(adjectives)
    verb, verb_past = rng.choice(VERB_PAIRS)
    number = rng.choice([str(rng.randint(2, 12)), str(rng.randint(13, 99)), str(rng.randint(100, 2000))])
    slots = {
        "noun": noun, "noun2": noun2, "nouns": engine.plural(noun), "adj": adj, "verb": verb,
        "verb_past": verb_past, "intrans_past": rng.choice(INTRANSITIVE_PAIRS)[1], "adverb": rng.choice(ADVERBS),
        "name": rng.choice(NAMES), "name2": rng.choice(NAMES), "place": rng.choice(PLACES),
        "prep": rng.choice(PREPOSITIONS), "time": rng.choice(TIMES), "time2": rng.choice(TIMES),
        "number": number, "a_adj_noun": engine.a(f"{adj} {noun2}"), "a_noun": engine.a(noun2),
    }
    text = rng.choice(TEMPLATES).format(**slots)
    return text[0].upper() + text[1:]


@dataclass(frozen=True)
class BroadWords:
    nouns: list[str]
    adjectives: list[str]
    verbs: list[str]


@functools.lru_cache(maxsize=1)
def broad_words() -> BroadWords:
    """The word lists of the ``wonderwords`` package, filtered to single lower-case words of 3-12 letters; every
    word of every entry of its profanity list is left out (its phrases too: "hot" goes with "hot carl"), and so
    are verb entries already inflected (``acted``)."""
    try:
        from importlib.resources import files

        assets = files("wonderwords") / "assets"
    except ModuleNotFoundError as error:
        raise RuntimeError("A broad training vocabulary needs the wonderwords package: "
                           "pip install 'tortoise-lab[train]' (or pass --broad-fraction 0).") from error

    def read(name: str) -> list[str]:
        return (assets / name).read_text(encoding="utf-8").split()

    banned = set(read("profanitylist.txt"))

    def clean(words: list[str]) -> list[str]:
        return sorted({w for w in words if w.isalpha() and w.islower() and 3 <= len(w) <= 12 and w not in banned})

    verbs = [v for v in clean(read("verblist.txt")) if not v.endswith(("ed", "ing"))]
    return BroadWords(clean(read("nounlist.txt")), clean(read("adjectivelist.txt")), verbs)


def _words(text: str) -> set[str]:
    return set(re.sub(r"[^a-z' ]", "", text.lower()).split())


def _broad_sentence(rng: random.Random, nouns: list[str], words: BroadWords) -> str:
    engine = _inflect_engine()
    noun, noun2 = rng.choice(nouns), rng.choice(nouns)
    adj, adj2 = rng.choice(words.adjectives), rng.choice(words.adjectives)
    verb, verb2 = rng.choice(words.verbs), rng.choice(words.verbs)
    slots = {
        "noun": noun, "noun2": noun2, "nouns": engine.plural(noun), "nouns2": engine.plural(noun2),
        "adj": adj, "adj2": adj2, "verb": verb, "verb2": verb2, "verb_ing": engine.present_participle(verb),
        "adverb": rng.choice(ADVERBS), "name": rng.choice(NAMES), "place": rng.choice(PLACES),
        "prep": rng.choice(PREPOSITIONS), "time": rng.choice(TIMES), "time2": rng.choice(TIMES),
        "number": str(rng.randint(2, 99)), "a_adj_noun": engine.a(f"{adj} {noun2}"), "a_noun": engine.a(noun2),
        "a_adj2": engine.a(adj2),
    }
    text = rng.choice(BROAD_TEMPLATES).format(**slots)
    return text[0].upper() + text[1:]


def make_sentences(n_train: int, n_held_out: int = 50, n_unseen: int = 50, seed: int = 0,
                   unseen_fraction: float = 0.08, broad_fraction: float = 0.0) -> Sentences:
    """Draw distinct sentences. A seeded ``unseen_fraction`` of the nouns never appears in ``train`` or
    ``held_out``; every ``unseen`` sentence uses at least one of them (its noun slots draw only from them).
    ``broad_fraction`` of the sentences (of every split) come from ``BROAD_TEMPLATES`` over ``broad_words()``,
    which never contain an unseen noun either."""
    rng = random.Random(seed)
    # Nouns inside fixed phrases ("the market", "before dinner") are spoken in training whatever the draw.
    in_phrases = set(" ".join(PLACES + TIMES).lower().split())
    candidates = [n for n in NOUNS if n not in in_phrases]
    unseen_nouns = set(rng.sample(candidates, max(1, round(unseen_fraction * len(NOUNS)))))
    seen_nouns = [n for n in NOUNS if n not in unseen_nouns]
    words = broad_words() if broad_fraction > 0 else None
    if words is not None:  # an unseen noun must stay unheard in training, whatever list it also sits in
        words = BroadWords(*([w for w in pool if w not in unseen_nouns]
                             for pool in (words.nouns, words.adjectives, words.verbs)))

    def draw(count: int, nouns: list[str], broad_nouns: list[str], taken: set[str],
             accept: Callable[[str], bool] = lambda text: True,
             exhausted: str = "The grammar ran out of distinct sentences after {found} of {count}.") -> list[str]:
        out: list[str] = []
        attempts = 0
        while len(out) < count:
            attempts += 1
            if attempts > 50 * count + 1000:
                raise ValueError(exhausted.format(found=len(out), count=count))
            # rng.random() only when the broad grammar is on: a fraction of 0 draws exactly the sentences it used to.
            if words is not None and rng.random() < broad_fraction:
                text = _broad_sentence(rng, broad_nouns, words)
            else:
                text = _sentence(rng, nouns, ADJECTIVES)
            if text not in taken and accept(text):
                taken.add(text)
                out.append(text)
        return out

    taken: set[str] = set()
    broad_nouns = words.nouns if words is not None else []
    held_out = draw(n_held_out, seen_nouns, broad_nouns, taken)
    unseen = draw(n_unseen, sorted(unseen_nouns), sorted(unseen_nouns), taken)
    train = draw(n_train, seen_nouns, broad_nouns, taken)
    if words is not None:
        # The broad lists are larger than what training uses of them: held-out sentences with a word (or a form of
        # one) that no training sentence has are replaced by sentences made only of heard words.
        heard = set().union(*map(_words, train))
        held_out = [t for t in held_out if _words(t) <= heard]
        held_out += draw(n_held_out - len(held_out), seen_nouns, broad_nouns, taken, lambda t: _words(t) <= heard,
                         f"Only {{found}} more of {n_held_out} held-out sentences could be made of words the "
                         f"{n_train} training sentences use; train on more sentences or lower broad_fraction.")
    return Sentences(train=train, held_out=held_out, unseen=unseen, unseen_words=sorted(unseen_nouns))


MAX_JOINED = 3  # sentences in one multi-sentence training utterance at most


def join_sentences(sentences: Sentences, fraction: float, seed: int = 0) -> Sentences:
    """``sentences`` with about ``fraction`` of the training sentences spoken in utterances of two or three
    consecutive sentences (so a model learns to say more than one sentence in a take, and to pause between them);
    the held-out splits are kept as they are. A fraction of 0 returns ``sentences`` unchanged, so recipes without
    it draw exactly what they did."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"The multi-sentence fraction must be between 0 and 1, got {fraction}.")
    if fraction == 0.0:
        return sentences
    rng = random.Random(f"join {seed}")  # its own stream: the sentences themselves do not change
    mean = (2 + MAX_JOINED) / 2  # sentences in a joined utterance, on average
    start_joined = fraction / (mean - (mean - 1) * fraction)  # P(an utterance is joined) giving that share of sentences
    train, i = [], 0
    while i < len(sentences.train):
        count = rng.randint(2, MAX_JOINED) if rng.random() < start_joined else 1
        train.append(" ".join(sentences.train[i:i + count]))
        i += count
    return Sentences(train=train, held_out=sentences.held_out, unseen=sentences.unseen,
                     unseen_words=sentences.unseen_words)
