"""Parity of the text front-end with upstream tortoise-tts 3.0.0: cleaning, token ids, decoding, splitting.

Every comparison here is exact (strings and integer ids).
"""

import json
import random

import pytest

from tortoise_lab.text import Tokenizer, clean_text, split_text

pytestmark = pytest.mark.parity

TRICKY_TEXTS = [
    # numbers, decimals, money, ordinals, years
    "I have 3 apples and 1,234,567 oranges.",
    "Pi is 3.14159, e is 2.718 and 0.5 is a half; 10.0.1 is a version.",
    "It costs $5.50, or $1, or $0.01, or $.99, or $1.2.3, or $0 and $1,000,000.50.",
    "Pay £3 or €2 or ¥100 today.",
    "The 1st, 2nd, 3rd, 4th, 11th, 21st, 101st and 1000th runners.",
    "In 1984, 2000, 2005, 2010, 1900, 1066, 1000, 3000 and 2999.",
    "Call 555-1234 at 10:30pm; 24/7; -5 degrees; 1e10.",
    # abbreviations
    "Mr. and Mrs. Smith met Dr. Jones on St. James St. with Lt. Col. Brown, Esq. of Acme Co. Ltd.",
    "MR. SMITH, Drs. Who and Sgt. Pepper, Capt. Hook, Gen. Lee, Maj. Tom, Rev. Green, Hon. Sir, Jr. Ft. Knox.",
    "mr.st. mrs.dr.",
    # unicode
    "Café naïve façade — déjà vu, Ångström, Straße, ŒUVRE.",
    "日本語のテキスト and 中文 text, 한국어.",
    "Emoji 😀🎉 and symbols ™ © ® ° ± ½ ¼ → ∞.",
    "“Smart quotes” and ‘single ones’ and «guillemets» — dashes – too…",
    # quotes and brackets
    'He said, "Hello there!" and she said "Bye."',
    "It's (very) [quite] {rather} <odd>, isn't it? Yes: no; maybe!",
    # long text
    "The quick brown fox jumps over the lazy dog. " * 12,
    # empty-ish and whitespace
    "",
    " ",
    "   \n\t  ",
    ".",
    "a",
    "Multiple   spaces\tand\ttabs\n\nand\r\nnewlines   here.",
    "  leading and trailing spaces  ",
    "UPPER lower MiXeD",
    "Weird!!! punctuation??? ... --- ;;; ,,,",
    "Hyphenated-words and under_scores and slash/separated and back\\slash.",
    "Numbers glued: abc123def, 12abc, x1y2z3, 007, 0, 00.",
]

SPLIT_CASES = [
    {"data_file": "riding_hood.txt", "desired": 200, "max": 300},
    {"data_file": "got.txt", "desired": 200, "max": 300},
    {"data_file": "seal_copypasta.txt", "desired": 200, "max": 300},
    {"data_file": "layman.txt", "desired": 200, "max": 300},
    {"data_file": "riding_hood.txt", "desired": 80, "max": 120},
    {"data_file": "got.txt", "desired": 40, "max": 55},
    {"data_file": "seal_copypasta.txt", "desired": 300, "max": 500},
    {"text": "\n This is a sample sentence.\n This is another sample sentence.\n This is a longer sample sentence "
             "that should force a split inthemiddlebutinotinthislongword.\n \"Don't split my quote... please\"\n",
     "desired": 20, "max": 40},
    {"text": "When you are really angry sometimes you use consecutive exclamation marks!!!!!! Is this a good thing "
             "to do?!?!?!\nI don't know but we should handle this situation..........................",
     "desired": 30, "max": 50},
    {"text": "“She said,” he said, “that it was fine.” Then: “No!” And… later... “Maybe?” "
             "A very long quote “" + "la " * 80 + "” ends here. Trailing text without an end",
     "desired": 50, "max": 90},
    {"text": "Ellipses... everywhere... and more....... Then a question?! And an answer!? " * 6,
     "desired": 60, "max": 100},
    {"text": "nospacesatallinthisverylongwordthatgoesonandonandon" * 6 + ". Short.", "desired": 40, "max": 70},
    {"text": "", "desired": 200, "max": 300},
    {"text": "... ?!", "desired": 200, "max": 300},
]


def random_split_cases(count: int, seed: int = 0) -> list[dict]:
    """Random soup of words, spaces, newlines, end marks and (curly) quotes, at random lengths."""
    rng = random.Random(seed)
    atoms = ["a", "be", "word", "hello", " ", " ", "  ", ".", "!", "?", '"', "...", "\n", ",", "“", "”", "x" * 30]
    cases = []
    for _ in range(count):
        desired = rng.randint(5, 60)
        cases.append({"text": "".join(rng.choice(atoms) for _ in range(rng.randint(1, 80))),
                      "desired": desired, "max": desired + rng.randint(1, 60)})
    return cases


FUZZ_CASES = random_split_cases(400)


@pytest.fixture(scope="module")
def upstream(reference):
    _, work = reference.run("ref_text.py", {"texts": TRICKY_TEXTS, "splits": SPLIT_CASES + FUZZ_CASES})
    return json.loads((work / "results.json").read_text())


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer()


def test_long_text_is_long():
    assert len(TRICKY_TEXTS[16]) > 400


@pytest.mark.parametrize("index", range(len(TRICKY_TEXTS)))
def test_clean_text_matches(upstream, index):
    assert clean_text(TRICKY_TEXTS[index]) == upstream["cleaned"][index]


@pytest.mark.parametrize("index", range(len(TRICKY_TEXTS)))
def test_token_ids_match(upstream, tokenizer, index):
    assert tokenizer.encode(TRICKY_TEXTS[index]) == upstream["ids"][index]


def test_decode_matches(upstream, tokenizer):
    assert [tokenizer.decode(ids) for ids in upstream["ids"]] == upstream["decoded"]


@pytest.mark.parametrize("index", range(len(SPLIT_CASES)))
def test_split_matches(upstream, index):
    case = SPLIT_CASES[index]
    text = upstream["data_texts"][case["data_file"]] if "data_file" in case else case["text"]
    assert split_text(text, desired_length=case["desired"], max_length=case["max"]) == upstream["pieces"][index]


def test_data_texts_were_split(upstream):
    # The corpus must actually exercise the splitter: got.txt alone gives dozens of pieces.
    assert len(upstream["pieces"][1]) > 50


def test_split_matches_on_random_text(upstream):
    """Exact equality on random text, except where upstream itself breaks max_length (then we must not)."""
    overshoots = 0
    for case, expected in zip(FUZZ_CASES, upstream["pieces"][len(SPLIT_CASES):]):
        ours = split_text(case["text"], desired_length=case["desired"], max_length=case["max"])
        if all(len(p) <= case["max"] for p in expected):
            assert ours == expected, case
        else:
            overshoots += 1
            assert all(len(p) <= case["max"] for p in ours), case
    assert overshoots < len(FUZZ_CASES) // 20
