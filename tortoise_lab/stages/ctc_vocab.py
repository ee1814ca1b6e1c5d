"""The recogniser's vocabulary for redaction: the Tacotron symbol table the official wav2vec2 model's outputs are
labelled with, and ``CtcVocab``, which maps text to class ids and per-frame classes back to a transcript as
transformers' ``Wav2Vec2CTCTokenizer`` does (read from a saved tokenizer folder or the hub)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

__all__ = ["OFFICIAL_VOCAB_ID", "TACOTRON_SYMBOLS", "CtcVocab"]

OFFICIAL_VOCAB_ID = "jbetker/tacotron-symbols"

# The Tacotron symbol table (keithito/tacotron) the official recogniser's 148 outputs are labelled with:
# blank, hyphen, punctuation and space, both letter cases, then ARPAbet phones prefixed with "@".
_ARPABET_VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")
_ARPABET_CONSONANTS = ("B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH",
                       "T", "TH", "V", "W", "Y", "Z", "ZH")
_ARPABET = tuple(sorted([v + stress for v in _ARPABET_VOWELS for stress in ("", "0", "1", "2")]
                        + list(_ARPABET_CONSONANTS)))
TACOTRON_SYMBOLS: tuple[str, ...] = (
    ("_", "-") + tuple("!'(),.:;? ") + tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
    + tuple("@" + phone for phone in _ARPABET)
)

# The spacing tidy-ups transformers applies to decoded text (``clean_up_tokenization``), in its order.
_TIDY_SPACES: tuple[tuple[str, str], ...] = (
    (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
    (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
)


@dataclass(frozen=True)
class CtcVocab:
    """The labels of a CTC recogniser's outputs, and how text maps onto them.

    Mirrors a transformers ``Wav2Vec2CTCTokenizer``: decoding merges repeated frames, drops the ``blank``,
    turns ``word_delimiter`` into a space, strips the ends and tidies spaces before punctuation; encoding
    looks up one character at a time (a space as ``word_delimiter``), giving ``None`` for a character with no
    label when ``unknown`` has none either.
    """

    token_ids: Mapping[str, int] = field(hash=False)
    blank: str = "_"
    word_delimiter: str = " "
    unknown: str = "<unk>"
    upper_case: bool = False  # transformers' do_lower_case: labels are upper case, transcripts lower-cased
    tidy_spaces: bool = True  # transformers' clean_up_tokenization_spaces

    @classmethod
    def tacotron(cls) -> "CtcVocab":
        """The Tacotron symbol table with blank ``_`` and a literal space between words (see module notes)."""
        return cls({symbol: i for i, symbol in enumerate(TACOTRON_SYMBOLS)})

    @classmethod
    def from_folder(cls, folder: str | Path) -> "CtcVocab":
        """Read a saved ``Wav2Vec2CTCTokenizer`` (vocab.json, tokenizer_config.json, special_tokens_map.json)."""
        folder = Path(folder)
        token_ids = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        settings: dict = {}
        for name in ("tokenizer_config.json", "special_tokens_map.json"):  # the second overrides, as in transformers
            path = folder / name
            if path.is_file():
                settings.update(json.loads(path.read_text(encoding="utf-8")))
        return cls.from_settings(token_ids, settings)

    @classmethod
    def from_settings(cls, token_ids: Mapping[str, int], settings: Mapping) -> "CtcVocab":
        """Build from a vocab mapping and tokenizer settings; missing settings take transformers' defaults."""

        def token(name: str, default: str) -> str:
            value = settings.get(name, default)
            return value["content"] if isinstance(value, dict) else value  # an AddedToken saved as a dict

        return cls(
            token_ids=dict(token_ids),
            blank=token("pad_token", "<pad>"),
            word_delimiter=token("word_delimiter_token", "|"),
            unknown=token("unk_token", "<unk>"),
            upper_case=bool(settings.get("do_lower_case", False)),
            tidy_spaces=bool(settings.get("clean_up_tokenization_spaces", True)),
        )

    @classmethod
    def from_pretrained(cls, name_or_folder: str | Path = OFFICIAL_VOCAB_ID) -> "CtcVocab":
        """A local tokenizer folder, or a hub repository (downloaded to / read from the hub cache)."""
        if Path(name_or_folder).is_dir():
            return cls.from_folder(name_or_folder)
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError

        vocab_path = Path(hf_hub_download(str(name_or_folder), "vocab.json"))
        for optional in ("tokenizer_config.json", "special_tokens_map.json"):
            try:
                hf_hub_download(str(name_or_folder), optional)
            except LocalEntryNotFoundError:
                raise  # offline and not cached: its settings are unknown, so do not guess them
            except EntryNotFoundError:
                pass  # the repository has no such file: transformers' defaults apply
        return cls.from_folder(vocab_path.parent)

    @property
    def labels(self) -> dict[int, str]:
        return {i: symbol for symbol, i in self.token_ids.items()}

    def decode(self, frame_ids: Sequence[int]) -> str:
        """Per-frame best class ids (T,) -> the transcript."""
        labels = self.labels
        merged = [labels.get(i, self.unknown) for k, i in enumerate(frame_ids) if k == 0 or frame_ids[k - 1] != i]
        symbols = [" " if s == self.word_delimiter else s for s in merged if s != self.blank]
        text = "".join(symbols).strip()
        if self.upper_case:
            text = text.lower()
        if self.tidy_spaces:
            for before, after in _TIDY_SPACES:
                text = text.replace(before, after)
        return text

    def encode(self, text: str) -> list[int | None]:
        """One id per character of ``text`` (None where neither it nor ``unknown`` has a label)."""
        if self.upper_case:
            text = text.upper()
        unknown_id = self.token_ids.get(self.unknown)
        return [self.token_ids.get(self.word_delimiter if c == " " else c, unknown_id) for c in text]
