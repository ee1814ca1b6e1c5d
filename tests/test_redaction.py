"""Redaction without the reference: bracket parsing, the transcript match, the vocabulary and ``Aligner``.

The recogniser is a stub whose frames we choose (one-hot logits), so positions are known exactly; one test
builds a tiny real ``Wav2Vec2ForCTC`` and loads it through ``Aligner.from_pretrained`` from local folders.
"""

import json

import pytest
import torch

from tortoise_lab.stages.redaction import (
    TACOTRON_SYMBOLS,
    Aligner,
    AlignerUnavailableError,
    AlignmentError,
    CtcVocab,
    RedactionPlan,
    match_characters,
    parse_redactions,
)

RATE = 16_000  # the recogniser's own rate: no resampling in these tests
HOP = 100  # samples per stub frame


class FramesStub(torch.nn.Module):
    """A recogniser whose best label on frame t is ``labels[t]``; counts its calls."""

    def __init__(self, labels: str, vocab: CtcVocab):
        super().__init__()
        ids = torch.tensor([vocab.token_ids[c] for c in labels])
        self.logits = torch.nn.Parameter(torch.nn.functional.one_hot(ids, len(vocab.token_ids)).float()[None],
                                         requires_grad=False)  # (1, T, V)
        self.calls = 0

    def forward(self, speech):
        from transformers.modeling_outputs import CausalLMOutput

        self.calls += 1
        return CausalLMOutput(logits=self.logits)


def stub_aligner(labels: str) -> tuple[Aligner, FramesStub]:
    vocab = CtcVocab.tacotron()
    stub = FramesStub(labels, vocab)
    return Aligner(stub, vocab), stub


def ramp(num_samples: int) -> torch.Tensor:
    """(1, N) waveform whose sample values are their indices, so a cut shows which samples survived."""
    return torch.arange(num_samples, dtype=torch.float32)[None]


# ------------------------------------------------------------------------------------------------ parsing


@pytest.mark.parametrize("text, spoken, kept", [
    ("no brackets", "no brackets", ((0, 10),)),
    ("ab[cd]ef", "abcdef", ((0, 1), (4, 5))),
    ("[ab]cd", "abcd", ((2, 3),)),
    ("ab[cd]", "abcd", ((0, 1),)),
    ("[a]b[c]d[e]", "abcde", ((1, 1), (3, 3))),
    ("a[]b", "ab", ((0, 0), (1, 1))),
    ("[all]", "all", ()),
])
def test_parse_redactions(text, spoken, kept):
    assert parse_redactions(text) == RedactionPlan(spoken, kept)


@pytest.mark.parametrize("text, problem", [
    ("hello [there", "never closed"),
    ("hello ]there", "no '\\[' before it"),
    ("[a [b] c]", "inside a redacted span"),
    ("[a] b] c", "no '\\[' before it"),
])
def test_unbalanced_brackets_raise_one_clear_error(text, problem):
    aligner, stub = stub_aligner("_ab_")
    with pytest.raises(ValueError, match=f"Unbalanced brackets .*{problem}"):
        aligner.redact(ramp(400), text, RATE)
    assert stub.calls == 0


# ------------------------------------------------------------------------------------------------ matching


def test_match_characters():
    assert match_characters("hello", "hello") == "hello"
    assert match_characters("hello", "") == "~~~~~"
    assert match_characters("", "abc") == ""
    assert match_characters("hxllo", "hello") == "h~llo"
    assert match_characters("abc", "xaxbxc") == "abc"
    assert match_characters("a~b", "a~b") == "a~b"  # a "~" in the text is never a match, even if heard
    # Ties go to marking the text character: "a" could match as well as "b".
    assert match_characters("ab", "ba") == "~b"
    assert match_characters("aab", "ab") == "a~b"


def test_match_characters_handles_long_texts():
    """Upstream recursed once per character and hit Python's recursion limit around 1000 characters."""
    text = "the quick brown fox " * 60
    assert match_characters(text, text[::2]).count("~") == len(text) - len(text[::2])


# ------------------------------------------------------------------------------------------------ vocabulary


def test_tacotron_symbols():
    vocab = CtcVocab.tacotron()
    assert len(TACOTRON_SYMBOLS) == 148 == len(set(TACOTRON_SYMBOLS))
    # Ids seen in upstream's training code: blank 0, "," 6, "." 7, space 11, "a" 38, "d" 41, "n" 51, "w" 60.
    assert [vocab.token_ids[c] for c in "_,. adnw"] == [0, 6, 7, 11, 38, 41, 51, 60]
    assert TACOTRON_SYMBOLS[64] == "@AA" and TACOTRON_SYMBOLS[-1] == "@ZH"


def test_decode_merges_repeats_drops_blanks_and_tidies():
    vocab = CtcVocab.tacotron()
    ids = [vocab.token_ids[c] for c in "__hh_h  ii _ ,  x__x_."]
    # Repeats merge unless a blank separates them (so do the spaces around the blank before ","); the tidy-up
    # turns one " ," into ","; the ends are stripped.
    assert vocab.decode(ids) == "hh i , xx."
    assert vocab.decode([]) == ""
    assert vocab.encode("hi x") == [vocab.token_ids[c] for c in "hi x"]
    assert vocab.encode("h[") == [vocab.token_ids["h"], None]  # no label and no unknown label


def test_vocab_from_folder(tmp_path):
    (tmp_path / "vocab.json").write_text(json.dumps({"<pad>": 0, "|": 1, "A": 2, "B": 3, "<unk>": 4}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "pad_token": "<pad>"}))
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({"unk_token": {"content": "<unk>"}}))
    vocab = CtcVocab.from_folder(tmp_path)
    assert (vocab.blank, vocab.word_delimiter, vocab.unknown, vocab.upper_case) == ("<pad>", "|", "<unk>", True)
    assert vocab.decode([2, 2, 0, 2, 1, 3]) == "aa b"
    assert vocab.encode("ab c") == [2, 3, 1, 4]


# ------------------------------------------------------------------------------------------------ aligner


def test_no_brackets_returns_the_input_without_running_the_model():
    aligner, stub = stub_aligner("_ab_")
    wav = ramp(400)
    assert aligner.redact(wav, "plain text, no brackets.", RATE) is wav
    assert stub.calls == 0


def test_align_places_each_character_on_its_first_frame():
    aligner, _ = stub_aligner("_aa_b__c_d")
    details = aligner.align_details(ramp(10 * HOP), "abcd", RATE)
    assert details.heard == "abcd" and details.matched == "abcd"
    assert details.positions == [0, 4 * HOP, 7 * HOP, 9 * HOP]  # the first character is placed at 0


def test_unheard_characters_are_interpolated():
    aligner, _ = stub_aligner("a___b___c_")
    details = aligner.align_details(ramp(10 * HOP), "axyzbc", RATE)
    assert details.matched == "a~~~bc"
    # x, y, z share the gap from a (0) to b (400) evenly, with floor division.
    assert details.positions == [0, 100, 200, 300, 4 * HOP, 8 * HOP]


def test_redaction_cuts_the_bracketed_audio():
    aligner, _ = stub_aligner("abcdef__")
    wav = ramp(8 * HOP)
    out = aligner.redact(wav, "ab[cd]ef", RATE)
    # Kept spans "ab" and "ef" each run from their first character's start to their last character's start
    # (upstream's rule: the last kept character's own audio goes too).
    expected = torch.cat([wav[:, 0:HOP], wav[:, 4 * HOP:5 * HOP]], dim=-1)
    assert torch.equal(out, expected)
    assert out.shape[-1] < wav.shape[-1] - 2 * HOP  # at least the bracketed "cd" is gone


def test_redaction_at_start_end_and_several():
    aligner, _ = stub_aligner("abcdef__")
    wav = ramp(8 * HOP)
    assert torch.equal(aligner.redact(wav, "[ab]cdef", RATE), wav[:, 2 * HOP:5 * HOP])
    assert torch.equal(aligner.redact(wav, "abcd[ef]", RATE), wav[:, 0:3 * HOP])
    assert torch.equal(aligner.redact(wav, "[a]bc[d]ef", RATE),
                       torch.cat([wav[:, HOP:2 * HOP], wav[:, 4 * HOP:5 * HOP]], dim=-1))


def test_redaction_keeps_the_input_rank():
    aligner, _ = stub_aligner("abcdef__")
    out = aligner.redact(ramp(8 * HOP)[0], "ab[cd]ef", RATE)
    assert out.shape == (2 * HOP,)


def test_fully_redacted_text_gives_empty_audio_without_running_the_model():
    aligner, stub = stub_aligner("abc")
    assert aligner.redact(ramp(300), "[abc]", RATE).shape == (1, 0)
    assert stub.calls == 0


def test_failed_alignment_raises():
    # With transformers' default word delimiter "|" (not a Tacotron symbol) a heard space has no id, so the
    # matched space can never be found in the frames.
    vocab = CtcVocab(CtcVocab.tacotron().token_ids, word_delimiter="|")
    aligner = Aligner(FramesStub("a b", vocab), vocab)
    with pytest.raises(AlignmentError, match="Could not align"):
        aligner.align(ramp(300), "a b", RATE)
    assert aligner.align(ramp(300), "ab", RATE) == [0, 200]


def test_empty_text_is_refused():
    aligner, _ = stub_aligner("ab")
    with pytest.raises(ValueError, match="empty"):
        aligner.align(ramp(200), "", RATE)


def test_from_pretrained_failure_is_one_sentence(monkeypatch):
    import transformers

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nMore details here.")

    monkeypatch.setattr(transformers.Wav2Vec2ForCTC, "from_pretrained", offline)
    with pytest.raises(AlignerUnavailableError) as caught:
        Aligner.from_pretrained()
    message = str(caught.value)
    assert "\n" not in message and message.count(". ") == 0 and "jbetker/" in message


def test_from_pretrained_reads_local_folders(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    vocab = CtcVocab.tacotron()
    config = Wav2Vec2Config(vocab_size=len(TACOTRON_SYMBOLS), hidden_size=16, num_hidden_layers=1,
                            num_attention_heads=2, intermediate_size=32, conv_dim=[8, 8], conv_stride=[5, 4],
                            conv_kernel=[10, 8], num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2,
                            feat_extract_norm="layer", do_stable_layer_norm=True)
    torch.manual_seed(0)
    Wav2Vec2ForCTC(config).save_pretrained(tmp_path / "model")
    (tmp_path / "vocab").mkdir()
    (tmp_path / "vocab" / "vocab.json").write_text(json.dumps(dict(vocab.token_ids)))
    settings = {"pad_token": "_", "word_delimiter_token": " "}
    (tmp_path / "vocab" / "tokenizer_config.json").write_text(json.dumps(settings))
    aligner = Aligner.from_pretrained(tmp_path / "model", tmp_path / "vocab")
    assert aligner.vocab == vocab
    wav = torch.randn(1, 8000, generator=torch.Generator().manual_seed(0))
    positions = aligner.align(wav, "hello", RATE)
    assert len(positions) == 5 and positions[0] == 0 and all(0 <= p < 8000 for p in positions)
