"""Reference side of tests/parity/test_redaction.py: upstream's Wav2VecAlignment (align, redact, max_alignment).

The hub is never contacted: ``Wav2Vec2ForCTC.from_pretrained`` is patched to hand back a tiny randomised model,
``Wav2Vec2CTCTokenizer.from_pretrained`` to read a tokenizer saved into the workdir, and the (unused) feature
extractor to a default one. Upstream's own constructor then runs unchanged.

args:
  config: Wav2Vec2Config kwargs of the tiny model; seed: its randomisation seed
  symbols: the label of each output id; weak_symbols / weak_bias: labels whose lm_head bias is lowered;
  standardise_on: [input key, rate] of the clip over which the other labels' logits are standardised
  tokenizers: [Wav2Vec2CTCTokenizer kwargs]; the first one is the aligner's
  align_cases / redact_cases: [[text, input key, sample rate]]
  stub_cases: [{"frames": [ids], "text": str, "num_samples": int, "tokenizer": index}] run through upstream
              align with a model stub whose arg-max frames are ``frames``
  pairs: [[s1, s2]] for max_alignment; decode_cases: [[ids]]; encode_cases: [str]
  official_config: Wav2Vec2Config kwargs to dump {key: shape} of (built on the meta device)
writes: aligner.pth and config.json (the tiny model), tokenizer_<i>/ (saved tokenizers), results.json,
        outputs.safetensors: "logits/<i>", "positions/<i>", "stub/<i>", "redact/<j>"
"""

import json
import os

import torch
import torchaudio
import transformers
from transformers import Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

import tortoise.utils.wav2vec_alignment as upstream
from _common import randomize_, read_args, read_inputs, save_state, workdir, write_outputs

args = read_args()
inputs = read_inputs()
os.chdir(workdir())  # upstream writes alignment_debug.pth into the working directory when an alignment fails
results = {"transformers": transformers.__version__}
outputs = {}

# ---------------------------------------------------------------- the tiny recogniser, randomised and saved
torch.manual_seed(args["seed"])
model = Wav2Vec2ForCTC(Wav2Vec2Config(**args["config"]))
randomize_(model, args["seed"])
model.eval()
with torch.no_grad():
    for symbol in args["weak_symbols"]:
        model.lm_head.bias[args["symbols"].index(symbol)] -= args["weak_bias"]
    # Standardise the strong labels' logits over the frames of one clip, so that each wins about as often.
    key, rate = args["standardise_on"]
    speech = torchaudio.functional.resample(inputs[key], rate, 16000)
    logits = model((speech - speech.mean()) / speech.std()).logits[0]  # (T, V)
    strong = [i for i, s in enumerate(args["symbols"]) if s not in args["weak_symbols"]]
    mean, std = logits[:, strong].mean(0), logits[:, strong].std(0)
    model.lm_head.weight[strong] /= std[:, None]
    model.lm_head.bias[strong] = (model.lm_head.bias[strong] - mean) / std
save_state(model, "aligner.pth")
(workdir() / "config.json").write_text(json.dumps(args["config"]))

# ---------------------------------------------------------------- tokenizers, saved and reloaded like a hub one
vocab_file = workdir() / "vocab.json"
vocab_file.write_text(json.dumps({s: i for i, s in enumerate(args["symbols"])}))
tokenizers = []
for index, kwargs in enumerate(args["tokenizers"]):
    folder = workdir() / f"tokenizer_{index}"
    Wav2Vec2CTCTokenizer(str(vocab_file), **kwargs).save_pretrained(str(folder))
    tokenizers.append(Wav2Vec2CTCTokenizer.from_pretrained(str(folder)))
results["decoded"] = [[t.decode(ids) for ids in args["decode_cases"]] for t in tokenizers]


def encode_or_error(tokenizer, text):
    try:
        return tokenizer.encode(text)
    except ValueError:  # transformers refuses a text whose first character has no id (not even an unknown one)
        return "ValueError"


results["encoded"] = [[encode_or_error(t, text) for text in args["encode_cases"]] for t in tokenizers]

# ---------------------------------------------------------------- upstream's constructor, hub calls redirected
_load_tokenizer = Wav2Vec2CTCTokenizer.from_pretrained
Wav2Vec2ForCTC.from_pretrained = classmethod(lambda cls, *a, **k: model)
Wav2Vec2CTCTokenizer.from_pretrained = classmethod(lambda cls, *a, **k: _load_tokenizer(str(workdir() / "tokenizer_0")))
Wav2Vec2FeatureExtractor.from_pretrained = classmethod(lambda cls, *a, **k: Wav2Vec2FeatureExtractor())
aligner = upstream.Wav2VecAlignment(device="cpu")

captured_logits = []
model.register_forward_hook(lambda module, args_, output: captured_logits.append(output.logits[0].detach().clone()))

matches = []  # (text, transcript, result) of each top-level max_alignment call
_max_alignment = upstream.max_alignment
_depth = [0]


def recording_max_alignment(s1, s2, *rest, **kwargs):
    _depth[0] += 1
    try:
        result = _max_alignment(s1, s2, *rest, **kwargs)
    finally:
        _depth[0] -= 1
    if _depth[0] == 0:
        matches.append((s1, s2, result))
    return result


upstream.max_alignment = recording_max_alignment


def error_name(call):
    try:
        return call(), None
    except Exception as error:  # noqa: BLE001 - the test compares which cases fail
        return None, type(error).__name__


with torch.no_grad():
    results["align"] = []
    for index, (text, key, rate) in enumerate(args["align_cases"]):
        captured_logits.clear(), matches.clear()
        positions, error = error_name(lambda: aligner.align(inputs[key], text, rate))
        outputs[f"logits/{index}"] = captured_logits[0]
        if positions is not None:
            outputs[f"positions/{index}"] = torch.tensor(positions, dtype=torch.int64)
        results["align"].append({"error": error, "heard": matches[0][1], "matched": matches[0][2]})

    results["redact"] = []
    for index, (text, key, rate) in enumerate(args["redact_cases"]):
        captured_logits.clear()
        wav, error = error_name(lambda: aligner.redact(inputs[key], text, rate))
        if wav is not None:
            outputs[f"redact/{index}"] = wav
            results["redact"].append({"error": None, "same_object": wav is inputs[key],
                                      "model_calls": len(captured_logits)})
        else:
            results["redact"].append({"error": error, "model_calls": len(captured_logits)})

    # Upstream's align on chosen frames: a stub whose logits put each frame's maximum on the given id.
    class FramesStub(torch.nn.Module):
        def __init__(self, frames, vocab_size):
            super().__init__()
            self.logits = torch.nn.functional.one_hot(torch.tensor(frames), vocab_size).float().unsqueeze(0)

        def forward(self, audio):
            return transformers.modeling_outputs.CausalLMOutput(logits=self.logits)

    results["stub"] = []
    for index, case in enumerate(args["stub_cases"]):
        aligner.model = FramesStub(case["frames"], len(args["symbols"]))
        aligner.tokenizer = tokenizers[case["tokenizer"]]
        matches.clear()
        positions, error = error_name(lambda: aligner.align(torch.zeros(1, case["num_samples"]), case["text"]))
        if positions is not None:
            outputs[f"stub/{index}"] = torch.tensor(positions, dtype=torch.int64)
        results["stub"].append({"error": error, "heard": matches[0][1] if matches else None,
                                "matched": matches[0][2] if matches else None})

upstream.max_alignment = _max_alignment
results["pairs"] = [upstream.max_alignment(s1, s2) for s1, s2 in args["pairs"]]

with torch.device("meta"):
    official = Wav2Vec2ForCTC(Wav2Vec2Config(**args["official_config"]))
results["official_shapes"] = {k: list(v.shape) for k, v in official.state_dict().items()}

(workdir() / "results.json").write_text(json.dumps(results))
write_outputs(outputs)
