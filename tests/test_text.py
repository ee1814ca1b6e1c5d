"""Behaviour of the text front-end that does not need the reference: cleaning, tokens, splitting limits."""

import random
import re

import pytest
import torch

from tortoise_lab.text import (
    DESIRED_PIECE_LENGTH,
    MAX_PIECE_LENGTH,
    SPACE_TOKEN,
    Tokenizer,
    clean_text,
    split_text,
)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer()


def test_clean_text_spells_out_numbers_money_and_abbreviations():
    assert clean_text("Dr. Smith paid $5.50 on the 3rd of May, 1984.") == (
        "doctor smith paid five dollars, fifty cents on the third of may, nineteen eighty-four."
    )
    assert clean_text("It is 3.5 km to St. Ives") == "it is three point five km to saint ives"
    assert clean_text("$1 and $0.01 and 1,000,000") == "one dollar and one cent and one million"
    assert clean_text("In 2005 and 1900") == "in two thousand five and nineteen hundred"


def test_clean_text_transliterates_and_collapses_whitespace():
    assert clean_text("“Café”   naïve\n\tTEXT") == "cafe naive text"


def test_clean_text_survives_a_stray_comma_in_money():
    # Upstream raises ValueError on this; we drop the comma.
    assert clean_text("$,5") == "five dollars"


def test_encode_uses_the_space_token(tokenizer):
    ids = tokenizer.encode("hello world")
    space_id = tokenizer._bpe.token_to_id(SPACE_TOKEN)
    assert ids.count(space_id) == 1
    assert all(0 <= i < tokenizer.vocab_size for i in ids)


def test_decode_inverts_encode(tokenizer):
    text = "Mr. Jones said: it's 12 o'clock, isn't it?"
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == clean_text(text)
    assert tokenizer.decode(torch.tensor(ids)) == clean_text(text)


def test_text_tokens_is_a_long_batch_of_one(tokenizer):
    tokens = tokenizer.text_tokens("a test")
    assert tokens.dtype == torch.long and tokens.shape == (1, len(tokenizer.encode("a test")))


def test_missing_tokenizer_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        Tokenizer(tmp_path / "nowhere.json")


# ------------------------------------------------------------------------------------------- splitting


def random_texts(count: int, seed: int):
    rng = random.Random(seed)
    atoms = ["a", "be", "word", "hello", " ", " ", "  ", ".", "!", "?", '"', "...", "\n", ",", "“", "”", "x" * 30]
    for _ in range(count):
        desired = rng.randint(5, 60)
        yield "".join(rng.choice(atoms) for _ in range(rng.randint(1, 120))), desired, desired + rng.randint(0, 60)


def letters(text: str) -> str:
    return re.sub(r"[^a-z]", "", text)


def test_split_never_exceeds_max_length_and_loses_no_words():
    for text, desired, maximum in random_texts(1500, seed=7):
        pieces = split_text(text, desired, maximum)
        assert all(0 < len(p) <= maximum for p in pieces), (text, desired, maximum)
        assert letters("".join(pieces)) == letters(text)


def test_split_keeps_short_text_whole():
    assert split_text("  One short sentence.  ") == ["One short sentence."]
    assert split_text("") == []
    assert split_text(" ... !? ") == []


def test_split_prefers_sentence_ends():
    sentence = "This sentence is exactly fifty characters long ok. "
    pieces = split_text(sentence * 10)
    assert all(p.endswith(".") for p in pieces)
    assert all(DESIRED_PIECE_LENGTH <= len(p) <= MAX_PIECE_LENGTH for p in pieces[:-1])


def test_split_breaks_an_endless_sentence_at_a_word():
    pieces = split_text("word " * 200)
    assert all(len(p) <= MAX_PIECE_LENGTH and not p.endswith(" ") for p in pieces)
    assert " ".join(pieces).split() == ["word"] * 200


def test_split_rejects_inconsistent_lengths():
    with pytest.raises(ValueError, match="desired_length"):
        split_text("text", desired_length=300, max_length=200)
