"""Text front-end: English cleaning, BPE tokenisation and long-text splitting (str -> text_tokens).

Everything here must give exactly the token ids the official models were trained on, so the cleaning rules
reproduce upstream tortoise-tts 3.0.0 character for character, quirks included (each quirk is noted where
it lives). The parity tests in ``tests/parity/test_text.py`` hold us to that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import inflect
import torch
from unidecode import unidecode

from tortoise_lab.config import TEXT_SPLIT_DESIRED, TEXT_SPLIT_MAX

__all__ = [
    "SPACE_TOKEN",
    "STOP_TOKEN",
    "UNK_TOKEN",
    "DESIRED_PIECE_LENGTH",
    "MAX_PIECE_LENGTH",
    "clean_text",
    "Tokenizer",
    "split_text",
    "CHUNK_MARKER",
    "chunk_text",
    "fit_chunks",
]

# ----------------------------------------------------------------------------------------------- cleaning

# Applied in this order, one rule after another (not as one alternation): a single pass would also expand an
# abbreviation glued to the end of a previous one ("mr.st." -> "mistersaint"), which upstream does not.
ABBREVIATIONS: tuple[tuple[str, str], ...] = (
    ("mrs", "misess"),
    ("mr", "mister"),
    ("dr", "doctor"),
    ("st", "saint"),
    ("co", "company"),
    ("jr", "junior"),
    ("maj", "major"),
    ("gen", "general"),
    ("drs", "doctors"),
    ("rev", "reverend"),
    ("lt", "lieutenant"),
    ("hon", "honorable"),
    ("sgt", "sergeant"),
    ("capt", "captain"),
    ("esq", "esquire"),
    ("ltd", "limited"),
    ("col", "colonel"),
    ("ft", "fort"),
)
_ABBREVIATION_RULES = [(re.compile(rf"\b{short}\.", re.IGNORECASE), long) for short, long in ABBREVIATIONS]

_DIGIT_GROUPS = re.compile(r"([0-9][0-9,]+[0-9])")  # "1,234,567"
_DOLLARS = re.compile(r"\$([0-9.,]*[0-9]+)")  # "$5", "$5.50", "$.99"
_DECIMAL = re.compile(r"([0-9]+\.[0-9]+)")  # "3.14"
_ORDINAL = re.compile(r"[0-9]+(st|nd|rd|th)")  # "21st"
_INTEGER = re.compile(r"[0-9]+")
_WHITESPACE = re.compile(r"\s+")
# Note: there is no pound-sign rule. Upstream has one, but it runs after transliteration, which has already
# turned "£" into "PS", so "£3" is read as "ps three". We reproduce that by simply not having the rule.

# Numbers strictly between these are read like years ("1984" -> "nineteen eighty-four").
_YEARLIKE_LOW, _YEARLIKE_HIGH = 1000, 3000

_inflect = inflect.engine()


def _unit(count: int, singular: str) -> str:
    return singular if count == 1 else singular + "s"


def _spell_dollars(match: re.Match) -> str:
    amount = match.group(1)
    parts = amount.split(".")
    if len(parts) > 2:  # "$1.2.3": not money we understand; leave the digits for the number rules
        return amount + " dollars"
    # Upstream crashes on a stray comma here ("$,5"); dropping it changes nothing else.
    whole, cents = (int(p.replace(",", "") or 0) for p in (parts + [""])[:2])
    if whole and cents:
        return f"{whole} {_unit(whole, 'dollar')}, {cents} {_unit(cents, 'cent')}"
    if whole:
        return f"{whole} {_unit(whole, 'dollar')}"
    if cents:
        return f"{cents} {_unit(cents, 'cent')}"
    return "zero dollars"


def _spell_integer(match: re.Match) -> str:
    number = int(match.group(0))
    if not _YEARLIKE_LOW < number < _YEARLIKE_HIGH:
        return _inflect.number_to_words(number, andword="")
    if number == 2000:
        return "two thousand"
    if 2000 < number < 2010:  # "2005" -> "two thousand five", not "twenty oh five"
        return "two thousand " + _inflect.number_to_words(number % 100)
    if number % 100 == 0:  # "1900" -> "nineteen hundred"
        return _inflect.number_to_words(number // 100) + " hundred"
    # Read in pairs of digits: "1984" -> "nineteen eighty-four", "1905" -> "nineteen oh five".
    return _inflect.number_to_words(number, andword="", zero="oh", group=2).replace(", ", " ")


def _spell_numbers(text: str) -> str:
    text = _DIGIT_GROUPS.sub(lambda m: m.group(1).replace(",", ""), text)
    text = _DOLLARS.sub(_spell_dollars, text)
    text = _DECIMAL.sub(lambda m: m.group(1).replace(".", " point "), text)
    text = _ORDINAL.sub(lambda m: _inflect.number_to_words(m.group(0)), text)
    return _INTEGER.sub(_spell_integer, text)


def clean_text(text: str) -> str:
    """Normalise English text the way the official tokenizer expects.

    Transliterate to ASCII, lowercase, spell out numbers and money, expand abbreviations, collapse runs of
    whitespace to one space and drop double quotes. Leading/trailing spaces are kept (upstream keeps them).
    """
    text = unidecode(text).lower()
    text = _spell_numbers(text)
    for pattern, expansion in _ABBREVIATION_RULES:
        text = pattern.sub(expansion, text)
    text = _WHITESPACE.sub(" ", text)
    return text.replace('"', "")


# ---------------------------------------------------------------------------------------------- tokenizer

SPACE_TOKEN = "[SPACE]"  # the vocabulary spells spaces as this token: the BPE pre-tokenizer would drop them
STOP_TOKEN = "[STOP]"
UNK_TOKEN = "[UNK]"


def _default_tokenizer_file() -> Path:
    from tortoise_lab.assets import data_file

    return data_file("tokenizer.json")


class Tokenizer:
    """The official BPE vocabulary (``tokenizer.json``, 255 symbols) behind ``clean_text``.

    ``path`` defaults to the official file from ``tortoise_lab.assets``.
    """

    def __init__(self, path: str | Path | None = None):
        from tokenizers import Tokenizer as _BpeModel

        self.path = Path(path) if path is not None else _default_tokenizer_file()
        if not self.path.is_file():
            raise FileNotFoundError(f"No tokenizer file at {self.path}.")
        self._bpe = _BpeModel.from_file(str(self.path))

    @property
    def vocab_size(self) -> int:
        return self._bpe.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Clean ``text`` and return its token ids."""
        return self._bpe.encode(clean_text(text).replace(" ", SPACE_TOKEN)).ids

    def model_ids(self, text: str) -> torch.Tensor:
        """(T,) ids as the autoregressive model takes them: the ids and one trailing 0 (upstream's api.py appends
        it before the model adds its own stop token)."""
        return torch.tensor(self.encode(text) + [0], dtype=torch.long)

    def text_tokens(self, text: str) -> torch.Tensor:
        """Token ids of ``text`` as a LongTensor of shape (1, T), ready for the autoregressive model."""
        return torch.tensor(self.encode(text), dtype=torch.long).unsqueeze(0)  # (1, T)

    def decode(self, ids) -> str:
        """Text of token ids (a list or a 1-D tensor); stop and unknown tokens are dropped."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        # The decoder joins tokens with spaces; real spaces are the [SPACE] tokens.
        text = self._bpe.decode(list(ids), skip_special_tokens=False).replace(" ", "")
        return text.replace(SPACE_TOKEN, " ").replace(STOP_TOKEN, "").replace(UNK_TOKEN, "")


# -------------------------------------------------------------------------------------------- splitting

# characters: aim for pieces about this long, and never longer than the max (upstream read.py's lengths)
DESIRED_PIECE_LENGTH, MAX_PIECE_LENGTH = TEXT_SPLIT_DESIRED, TEXT_SPLIT_MAX
CHUNK_MARKER = "|"  # read: an explicit chunk boundary in a text file (as upstream's read.py honoured it)
SHORTEST_FITTED_CHUNK = 20  # characters: fit_chunks shortens the default lengths no further than this
_SENTENCE_ENDS = "!?\n"  # always end a sentence ("." only when a space or the end follows)
_BACKTRACK_STOPS = "!?.\n "  # where a forced split may fall when no sentence has ended yet
_SMART_QUOTES = re.compile(r"[“”]")
_PUNCTUATION_ONLY = re.compile(r"^[\s.,;:!?]*$")


@dataclass
class _Scanner:
    """A cursor over ``text`` that grows the current piece one character at a time and tracks quotes.

    The quote flag flips whenever the character *under the cursor* after a move is a double quote, in either
    direction. Moving back therefore flips on the character it lands on, not the one it drops; upstream does
    the same, and the exact split points depend on it.
    """

    text: str
    pos: int = -1
    in_quote: bool = False
    piece: str = ""

    def forward(self, steps: int = 1) -> str:
        for _ in range(steps):
            self.pos += 1
            self.piece += self.text[self.pos]
            self._flip_on_quote()
        return self.text[self.pos]

    def back(self, steps: int = 1) -> str:
        for _ in range(steps):
            self.pos -= 1
            self.piece = self.piece[:-1]
            self._flip_on_quote()
        return self.text[self.pos]

    def _flip_on_quote(self) -> None:
        if self.text[self.pos] == '"':
            self.in_quote = not self.in_quote

    def ahead(self, offset: int) -> str:
        """The character ``offset`` places on, or "" near the ends.

        The last character of the text also reads as "" (upstream's bound); since "" is "in" every string,
        the membership tests below treat it as a space or a punctuation mark, as upstream does.
        """
        index = self.pos + offset
        return self.text[index] if 0 <= index < len(self.text) - 1 else ""


def _scan_pieces(text: str, desired_length: int, max_length: int) -> list[str]:
    scan = _Scanner(text)
    pieces: list[str] = []
    sentence_ends: list[int] = []  # positions (in text) where a sentence ended inside the current piece

    def cut() -> None:
        pieces.append(scan.piece)
        scan.piece = ""
        sentence_ends.clear()

    while scan.pos < len(text) - 1:
        char = scan.forward()
        if len(scan.piece) >= max_length:
            if sentence_ends and len(scan.piece) > desired_length / 2:
                scan.back(scan.pos - sentence_ends[-1])  # end the piece at its last complete sentence
            else:  # no usable sentence end: back up to a word boundary, but not below the desired length
                while char not in _BACKTRACK_STOPS and scan.pos > 0 and len(scan.piece) > desired_length:
                    char = scan.back()
            cut()
        elif not scan.in_quote and (char in _SENTENCE_ENDS or (char == "." and scan.ahead(1) in "\n ")):
            # Swallow a run of end marks ("?!", "...") into this sentence, within the length limit.
            while scan.pos < len(text) - 1 and len(scan.piece) < max_length and scan.ahead(1) in "!?.":
                char = scan.forward()
            sentence_ends.append(scan.pos)
            if len(scan.piece) >= desired_length:
                cut()
        elif scan.in_quote and scan.ahead(1) == '"' and scan.ahead(2) in "\n ":
            # A closing quote followed by a space also ends a sentence.
            scan.forward(2)
            sentence_ends.append(scan.pos)
    pieces.append(scan.piece)
    return pieces


def _enforce_max_length(piece: str, max_length: int) -> list[str]:
    """Split a piece that is still too long at its last space (rare: a closing quote can overshoot by one)."""
    out = []
    while len(piece) > max_length:
        space = piece.rfind(" ", 1, max_length + 1)
        head, piece = (piece[:space], piece[space + 1:]) if space > 0 else (piece[:max_length], piece[max_length:])
        out.append(head.strip())
    return out + [piece.strip()]


def split_text(text: str, desired_length: int = DESIRED_PIECE_LENGTH, max_length: int = MAX_PIECE_LENGTH) -> list[str]:
    """Split long text into pieces of about ``desired_length`` characters, keeping sentences and quotes whole.

    A piece ends at a sentence end once it has reached ``desired_length``; a piece that reaches ``max_length``
    goes back to its last sentence end, or failing that to a word boundary. Whitespace is collapsed, curly
    double quotes become straight ones, and pieces with no words are dropped. No piece exceeds
    ``max_length``. The result equals upstream's ``split_and_recombine_text`` (except in the rare case where
    that returns a piece one character over ``max_length``).
    """
    if not 0 < desired_length <= max_length:
        raise ValueError(f"Need 0 < desired_length <= max_length, got {desired_length} and {max_length}.")
    text = re.sub(r"\n\n+", "\n", text)
    text = _WHITESPACE.sub(" ", text)
    text = _SMART_QUOTES.sub('"', text)
    pieces = [p.strip() for p in _scan_pieces(text, desired_length, max_length)]
    pieces = [p for p in pieces if p and not _PUNCTUATION_ONLY.match(p)]
    return [short for p in pieces for short in _enforce_max_length(p, max_length)
            if short and not _PUNCTUATION_ONLY.match(short)]


def chunk_text(text: str, text_split: tuple[int, int] | None = None, marker: str | None = None) -> list[str]:
    """The chunks a text is synthesised in, one after another (the only chunking in the package).

    With ``marker`` (``read`` passes ``CHUNK_MARKER``): split at the marker when the text has one, else always by
    ``split_text``; whitespace is collapsed. Without: a text no longer than the max stays whole unless
    ``text_split`` (desired, max) is given, longer ones are split by ``split_text``. ValueError for empty text.
    """
    text = text.strip()
    if not text:
        raise ValueError("The text is empty; give words to speak.")
    desired, maximum = text_split or (TEXT_SPLIT_DESIRED, TEXT_SPLIT_MAX)
    if marker is not None:
        pieces = text.split(marker) if marker in text else split_text(text, desired, maximum)
        return [" ".join(piece.split()) for piece in pieces if piece.strip()]
    if text_split is None and len(text) <= maximum:
        return [text]
    return [chunk for chunk in split_text(text, desired, maximum) if chunk.strip()] or [text]


def fit_chunks(text: str, text_split: tuple[int, int] | None, fits: Callable[[str], bool],
               marker: str | None = None, model_split: tuple[int, int] | None = None,
               ) -> tuple[list[str], tuple[int, int] | None]:
    """``chunk_text``, with the default lengths shortened (by a quarter at a time) until every chunk ``fits`` the
    model. Returns (chunks, the (desired, max) lengths used when they are not the defaults, else None).

    ``model_split``: the model's own (desired, max) lengths, used instead of upstream's when the user gave none; the
    text is then always split by them (a model trained on single sentences hears one at a time). Lengths the user
    gave (``text_split``) and chunks cut at a marker are kept as they are: a chunk of theirs that does not fit is
    for the caller to refuse.
    """
    chunks = chunk_text(text, text_split or model_split, marker)
    if text_split is not None or (marker is not None and marker in text) or all(fits(c) for c in chunks):
        return chunks, None
    desired, maximum = model_split or (TEXT_SPLIT_DESIRED, TEXT_SPLIT_MAX)
    while maximum > SHORTEST_FITTED_CHUNK:
        maximum = max(SHORTEST_FITTED_CHUNK, maximum * 3 // 4)
        desired = max(1, min(desired, maximum * 2 // 3))
        chunks = chunk_text(text, (desired, maximum), marker)
        if all(fits(c) for c in chunks):
            break
    return chunks, (desired, maximum)
