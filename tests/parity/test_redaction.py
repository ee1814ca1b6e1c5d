"""Parity of redaction with upstream tortoise-tts 3.0.0 (``tortoise/utils/wav2vec_alignment.py``).

The reference builds upstream's ``Wav2VecAlignment`` around a tiny randomised ``Wav2Vec2ForCTC`` (transformers
4.31) and a tokenizer saved into its workdir (the hub is never contacted). We load the same weights strictly into
a transformers 5.x ``Wav2Vec2ForCTC`` built from the same config, read the saved tokenizer with
``CtcVocab.from_folder``, and compare: logits, transcripts, text matches, per-character positions and redacted
audio. A frames stub (logits whose arg-max we choose) exercises the scan and interpolation on many cases, and
random string pairs exercise ``match_characters``.
"""

import json
import math
import random

import pytest
import torch

from tortoise_lab.checkpoints import FORMATS, load_weights, to_our_keys
from tortoise_lab.stages.redaction import TACOTRON_SYMBOLS, Aligner, AlignmentError, CtcVocab, match_characters

pytestmark = pytest.mark.parity

SEED = 5
# The tiny recogniser: the official model's layout (layer-normed conv stack, stable layer norm) at toy sizes.
# Three convolutions with strides 5*4*4 give one frame per 80 samples at 16 kHz (the official 320).
TINY_CONFIG = dict(
    vocab_size=len(TACOTRON_SYMBOLS), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
    intermediate_size=64, conv_dim=[16, 16, 16], conv_stride=[5, 4, 4], conv_kernel=[10, 8, 8],
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, feat_extract_norm="layer",
    do_stable_layer_norm=True, conv_bias=True, pad_token_id=0,
)
# jbetker/wav2vec2-large-robust-ft-libritts-voxpopuli: wav2vec2-large-robust with a 148-symbol head.
OFFICIAL_CONFIG = dict(
    vocab_size=len(TACOTRON_SYMBOLS), hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
    intermediate_size=4096, conv_dim=[512] * 7, conv_stride=[5, 2, 2, 2, 2, 2, 2], conv_kernel=[10, 3, 3, 3, 3, 2, 2],
    num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16, feat_extract_norm="layer",
    do_stable_layer_norm=True, conv_bias=True,
)
# A random head over 148 labels would rarely say the letters of a test text. The reference lowers the bias of
# every label outside a small alphabet and standardises the alphabet's logits over the frames of clip24, so the
# transcript is a varied random string over that alphabet (blanks and spaces included) and texts written in it
# match it in many places: the alignment is meaningful (checked in test_alignments_are_meaningful).
ALPHABET = "_ ehlorst,."
WEAK_BIAS = 8.0
TOKENIZERS = [
    {"pad_token": "_", "word_delimiter_token": " "},  # the reading of jbetker/tacotron-symbols we use
    {},  # transformers' defaults (blank "<pad>", delimiter "|"): neither is a Tacotron symbol
    {"pad_token": "_", "word_delimiter_token": " ", "do_lower_case": True, "clean_up_tokenization_spaces": False},
]
ALIGN_CASES = [
    ["hello there, the rats sort the straw.", "clip24", 24_000],
    ["Hello There", "clip24", 24_000],
    ["so.", "clip24", 24_000],
    ["s", "clip24", 24_000],  # one character: placed at 0 without a scan
    ["the other hose is lost. let her rest.", "clip22", 22_050],
]
REDACT_CASES = [
    ["hello [there], the rats sort the straw.", "clip24", 24_000],  # middle
    ["[hello there,] the rats sort the straw.", "clip24", 24_000],  # start
    ["hello there, the rats [sort the straw.]", "clip24", 24_000],  # end
    ["[hello] there, [the] rats [sort] the [straw.]", "clip24", 24_000],  # several
    ["hello [] there", "clip24", 24_000],  # empty brackets
    ["hello there, the rats sort the straw.", "clip24", 24_000],  # no brackets: unchanged, model not run
    ["the [other] hose is lost. [let her] rest.", "clip22", 22_050],
]
UNBALANCED = ["hello [there", "[a [b] c]"]  # upstream asserts on these; we raise ValueError

# Waveforms and logits: same resampler and same model code in both environments.
LOGITS_TOL = dict(rtol=1e-5, atol=2e-5)  # measured 1.9e-6 (5.x runs attention through SDPA)
WAV_TOL = dict(rtol=0, atol=1e-6)  # measured 0: redacted audio is slices of the input


def synth(num_samples: int, sample_rate: int, seed: int) -> torch.Tensor:
    """(1, N) syllable-like test signal: tone bursts with moving pitch over a little noise."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(num_samples, dtype=torch.float64) / sample_rate
    pitch = 140 + 60 * torch.sin(2 * math.pi * 0.7 * t)
    voiced = torch.sin(2 * math.pi * torch.cumsum(pitch, 0) / sample_rate) + 0.4 * torch.sin(
        2 * math.pi * 3 * torch.cumsum(pitch, 0) / sample_rate)
    envelope = 0.5 + 0.5 * torch.sin(2 * math.pi * 4.0 * t + float(torch.rand((), generator=gen)) * 6.28)
    noise = torch.randn(num_samples, generator=gen, dtype=torch.float64)
    return (0.4 * envelope * voiced + 0.05 * noise).float().unsqueeze(0)


INPUTS = {"clip24": synth(2 * 24_000, 24_000, seed=1), "clip22": synth(2 * 22_050 + 77, 22_050, seed=2)}


def stub_cases() -> list[dict]:
    """Random frame sequences over a small alphabet, with texts that partly match them.

    Every third case reads the frames with transformers' default tokenizer settings (tokenizer 1), under which a
    space has no id, so alignments whose text has a heard space fail in both implementations.
    """
    rng = random.Random(SEED)
    ids = {s: TACOTRON_SYMBOLS.index(s) for s in "_ abc,."}
    cases = []
    for k in range(90):
        num_frames = rng.randint(1, 40)
        frames = [ids[rng.choice("___ abc,.")] for _ in range(num_frames)]
        text = "".join(rng.choice("abc ,.dA") for _ in range(rng.randint(1, 12)))
        heard = [TACOTRON_SYMBOLS[i] for i in frames if i != ids["_"]]
        if heard and k % 4:  # mostly start with a heard character: upstream refuses texts whose first one is not
            text = heard[0] + text
        cases.append({"frames": frames, "text": text, "tokenizer": 1 if k % 3 == 2 else 0,
                      "num_samples": num_frames * rng.randint(1, 400) + rng.randint(0, 50)})
    # "İ" lower-cases to two characters: the match is longer than the text, which upstream counts as a failure.
    cases.append({"frames": [ids[c] for c in "_a_b_"], "text": "aİb", "tokenizer": 0, "num_samples": 500})
    return cases


def string_pairs() -> list[list[str]]:
    rng = random.Random(SEED + 1)
    return [["".join(rng.choice("abcd ") for _ in range(rng.randint(0, 14))),
             "".join(rng.choice("abcde ") for _ in range(rng.randint(0, 14)))] for _ in range(300)]


DECODE_CASES = [
    [0, 0, 45, 45, 0, 45, 11, 11, 49, 0, 56, 56, 11, 6, 11, 7, 0],  # "h_h  lo  s , ." with blanks and repeats
    [11, 38, 11, 3, 11, 56, 11, 11, 10, 11],  # spaces around an apostrophe and a question mark
    [],
    [64, 64, 12, 0, 38],  # an ARPAbet label and an upper-case letter
]
# Align only ever encodes lower-cased text, so multi-character labels ("@AA") never occur in it.
ENCODE_CASES = ["hello there", "Hi, yes.", "x~y", "@aa b", " a", ""]


@pytest.fixture(scope="module")
def ref(reference):
    args = dict(config=TINY_CONFIG, seed=SEED, symbols=list(TACOTRON_SYMBOLS),
                weak_symbols=[s for s in TACOTRON_SYMBOLS if s not in ALPHABET], weak_bias=WEAK_BIAS,
                standardise_on=["clip24", 24_000], tokenizers=TOKENIZERS, align_cases=ALIGN_CASES,
                redact_cases=REDACT_CASES + [[t, "clip24", 24_000] for t in UNBALANCED], stub_cases=stub_cases(), pairs=string_pairs(), decode_cases=DECODE_CASES, encode_cases=ENCODE_CASES,
                official_config=OFFICIAL_CONFIG)
    outputs, work = reference.run("ref_redaction.py", args, INPUTS)
    return outputs, json.loads((work / "results.json").read_text()), work


@pytest.fixture(scope="module")
def ours(ref):
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    _, _, work = ref
    model = Wav2Vec2ForCTC(Wav2Vec2Config(**json.loads((work / "config.json").read_text())))
    load_weights(model, work / "aligner.pth", "aligner")  # strict keys, weights only
    return Aligner(model, CtcVocab.from_folder(work / "tokenizer_0"))


def test_vocab_reads_saved_tokenizers_like_transformers(ref):
    _, results, work = ref
    for index in range(len(TOKENIZERS)):
        vocab = CtcVocab.from_folder(work / f"tokenizer_{index}")
        assert [vocab.decode(ids) for ids in DECODE_CASES] == results["decoded"][index]
        for text, expected in zip(ENCODE_CASES, results["encoded"][index]):
            ids = vocab.encode(text)
            if expected == "ValueError":  # transformers refuses a first character without an id; we give None
                assert ids[0] is None
            else:
                assert ids == expected


def test_match_characters_equals_max_alignment(ref):
    _, results, _ = ref
    assert [match_characters(s1, s2) for s1, s2 in string_pairs()] == results["pairs"]


def test_logits_transcripts_and_positions(ref, ours):
    outputs, results, _ = ref
    for index, (text, key, rate) in enumerate(ALIGN_CASES):
        logits = ours.frame_logits(INPUTS[key], rate)
        torch.testing.assert_close(logits, outputs[f"logits/{index}"], **LOGITS_TOL)
        assert torch.equal(logits.argmax(-1), outputs[f"logits/{index}"].argmax(-1))
        expected = results["align"][index]
        assert expected["error"] is None, expected
        details = ours.align_details(INPUTS[key], text, rate)
        assert details.heard == expected["heard"]
        assert details.matched == expected["matched"]
        assert details.positions == outputs[f"positions/{index}"].tolist()


def test_alignments_are_meaningful(ref, ours):
    """Most characters are heard, positions never go back, and they spread over the clip."""
    _, results, _ = ref
    text, key, rate = ALIGN_CASES[0]
    matched = results["align"][0]["matched"]
    assert matched.count("~") <= len(text) // 3, matched
    assert "~" in matched  # the interpolation of unheard characters is exercised too
    positions = ours.align(INPUTS[key], text, rate)
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
    assert positions[-1] > 0.6 * INPUTS[key].shape[-1]


def test_redaction(ref, ours):
    outputs, results, _ = ref
    for index, (text, key, rate) in enumerate(REDACT_CASES):
        expected = results["redact"][index]
        assert expected["error"] is None, (text, expected)
        wav = ours.redact(INPUTS[key], text, rate)
        reference_wav = outputs[f"redact/{index}"]
        assert wav.shape == reference_wav.shape, text
        torch.testing.assert_close(wav, reference_wav, **WAV_TOL)
        if "[" not in text:
            assert expected["same_object"] and expected["model_calls"] == 0
            assert wav is INPUTS[key]
        else:
            assert 0 < wav.shape[-1] < INPUTS[key].shape[-1]


def test_unbalanced_brackets(ref, ours):
    _, results, _ = ref
    for offset, text in enumerate(UNBALANCED):
        assert results["redact"][len(REDACT_CASES) + offset]["error"] == "AssertionError"
        with pytest.raises(ValueError, match="Unbalanced brackets"):
            ours.redact(INPUTS["clip24"], text)


def test_scan_and_interpolation_on_chosen_frames(ref):
    """Upstream's align on stub logits: same positions, or both fail."""
    outputs, results, work = ref
    vocabs = [CtcVocab.from_folder(work / f"tokenizer_{i}") for i in range(len(TOKENIZERS))]
    failures = refused = 0
    for index, case in enumerate(stub_cases()):
        vocab = vocabs[case["tokenizer"]]
        frames = torch.tensor(case["frames"])
        stub = _FramesStub(torch.nn.functional.one_hot(frames, len(TACOTRON_SYMBOLS)).float())
        aligner = Aligner(stub, vocab)
        expected = results["stub"][index]
        wav = torch.zeros(1, case["num_samples"])
        if expected["error"] == "ValueError":
            # Upstream's tokenizer refuses the match when its first character has no id (an unheard one, or a
            # space under the default delimiter); that character is placed at 0 anyway, so we align the rest
            # (which fails only if another heard character has no id).
            matched = expected["matched"]
            assert vocab.encode(matched[:1]) == [None], expected
            refused += 1
            if all(i is not None for i, c in zip(vocab.encode(matched)[1:], matched[1:]) if c != "~"):
                assert len(aligner.align(wav, case["text"])) == len(case["text"])
            else:
                with pytest.raises(AlignmentError):
                    aligner.align(wav, case["text"])
        elif expected["error"] is not None:
            failures += 1
            assert expected["error"] == "AssertionError", expected
            with pytest.raises(AlignmentError):
                aligner.align(wav, case["text"])
        else:
            details = aligner.align_details(wav, case["text"])
            assert (details.heard, details.matched) == (expected["heard"], expected["matched"])
            assert details.positions == outputs[f"stub/{index}"].tolist(), case
    assert 0 < failures < len(stub_cases()) // 2 and refused > 0  # every path is exercised


class _FramesStub(torch.nn.Module):
    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = torch.nn.Parameter(logits.unsqueeze(0), requires_grad=False)  # (1, T, V)

    def forward(self, speech):
        from transformers.modeling_outputs import CausalLMOutput

        return CausalLMOutput(logits=self.logits)


def test_official_config_keys(ref):
    """A 4.31 state dict of the official recogniser's layout loads strictly into a 5.x Wav2Vec2ForCTC."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    _, results, _ = ref
    with torch.device("meta"):
        model = Wav2Vec2ForCTC(Wav2Vec2Config(**OFFICIAL_CONFIG))
        reference_state = {k: torch.empty(shape) for k, shape in results["official_shapes"].items()}
        # The hub file predates parametrized weight norm: its positional convolution has weight_g/weight_v.
        legacy = {k.replace("parametrizations.weight.original0", "weight_g")
                  .replace("parametrizations.weight.original1", "weight_v"): v for k, v in reference_state.items()}
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for state in (reference_state, legacy):
        translated = {k: tuple(v.shape) for k, v in to_our_keys(FORMATS["aligner"], state).items()}
        assert translated == ours
