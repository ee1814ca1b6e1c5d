"""Reference side of the UnifiedVoice parity tests (runs in .venv-ref; see _common.py).

args: {"mode": "official"} -> writes shapes.json ({key: shape} of the official-size state dict), or
      {"mode": "small", "config": {...UnifiedVoice kwargs...}, "seed": int, "steps": int,
       "sample": {"seed", "top_p", "temperature", "repetition_penalty", "num", "code_1_boost"}} with inputs
      cond_mels, cond_latent, text_tokens, mel_codes, latent_cond, latent_text, latent_codes, gen_cond, gen_text.
"""

import json

import torch
from _common import randomize_, read_args, read_inputs, save_state, workdir, write_outputs
from tortoise.models.autoregressive import UnifiedVoice

OFFICIAL = dict(max_mel_tokens=604, max_text_tokens=402, max_conditioning_inputs=2, layers=30, model_dim=1024,
                heads=16, number_text_tokens=255, start_text_token=255, checkpointing=False,
                train_solo_embeddings=False)


def official_shapes():
    with torch.device("meta"):
        model = UnifiedVoice(**OFFICIAL)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    (workdir() / "shapes.json").write_text(json.dumps(shapes))


def add_legacy_attention_buffers(path, layers, positions):
    """The official file comes from an older transformers that saved GPT-2's causal mask and masked_bias."""
    state = torch.load(path, weights_only=True)
    mask = torch.tril(torch.ones(positions, positions, dtype=torch.uint8)).view(1, 1, positions, positions)
    for i in range(layers):
        state[f"gpt.h.{i}.attn.bias"] = mask.clone()
        state[f"gpt.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(state, path)


def generate(model, kv_cache, cond, text, steps):
    """Greedy inference_speech; returns (codes, per-step scores (B, steps_run, V))."""
    model.post_init_gpt2_config(kv_cache=kv_cache)
    captured = {}
    plain_generate = model.inference_model.generate

    def generate_with_scores(*a, **kw):
        out = plain_generate(*a, output_scores=True, return_dict_in_generate=True, **kw)
        captured["scores"] = torch.stack(out.scores, dim=1)
        return out.sequences

    model.inference_model.generate = generate_with_scores
    codes = model.inference_speech(cond, text, do_sample=False, max_generate_length=steps)
    return codes, captured["scores"]


def small(args, inputs):
    config = dict(args["config"], checkpointing=False, train_solo_embeddings=False)
    model = UnifiedVoice(**config).eval()
    randomize_(model, args["seed"])
    path = save_state(model, "autoregressive.pth")
    positions = config["max_mel_tokens"] + 2 + config["max_conditioning_inputs"] + config["max_text_tokens"] + 2
    add_legacy_attention_buffers(path, config["layers"], positions)
    out = {}
    with torch.no_grad():
        out["cond_latent_from_mels"] = model.get_conditioning(inputs["cond_mels"])

        # Teacher-forced logits: capture get_logits' (text, mel) logits inside the real forward.
        captured = {}
        plain_get_logits = model.get_logits

        def get_logits_capture(*a, **kw):
            result = plain_get_logits(*a, **kw)
            captured["result"] = result
            return result

        model.get_logits = get_logits_capture
        cond, text, codes = inputs["cond_latent"], inputs["text_tokens"], inputs["mel_codes"]
        batch = text.shape[0]
        model(cond, text, torch.full((batch,), text.shape[1]), codes,
              torch.full((batch,), codes.shape[1] * model.mel_length_compression), clip_inputs=False)
        out["text_logits"], out["mel_logits"] = captured["result"]  # (B, V, T) each
        model.get_logits = plain_get_logits

        # The AR latents exactly as api.py asks for them (k candidates, one prompt).
        cond, text, codes = inputs["latent_cond"], inputs["latent_text"], inputs["latent_codes"]
        k = codes.shape[0]
        out["latents"] = model(cond.repeat(k, 1), text.repeat(k, 1), torch.tensor([text.shape[-1]]), codes,
                               torch.tensor([codes.shape[-1] * model.mel_length_compression]),
                               return_latent=True, clip_inputs=False)

        for kv_cache in (False, True):
            codes, scores = generate(model, kv_cache, inputs["gen_cond"], inputs["gen_text"], args["steps"])
            name = "cached" if kv_cache else "uncached"
            out[f"codes_{name}"] = codes
            out[f"scores_{name}"] = scores

        # Sampling as api.py asks for it (one prompt, several return sequences), seeded through the global RNG.
        sample = args["sample"]
        model.post_init_gpt2_config(kv_cache=False)
        for name, code_1_boost in (("codes_sampled", 0.0), ("codes_sampled_code_1_boosted", sample["code_1_boost"])):
            # The boost makes mel code 1 likely, so that upstream's penalty on it (its filler id) shows.
            model.mel_head.bias[1] += code_1_boost
            torch.manual_seed(sample["seed"])
            out[name] = model.inference_speech(
                inputs["gen_cond"][:1], inputs["gen_text"][:1], do_sample=True, top_p=sample["top_p"],
                temperature=sample["temperature"], num_return_sequences=sample["num"], length_penalty=1.0,
                repetition_penalty=sample["repetition_penalty"], max_generate_length=args["steps"])
            model.mel_head.bias[1] -= code_1_boost
    write_outputs(out)


if __name__ == "__main__":
    args = read_args()
    if args["mode"] == "official":
        official_shapes()
    else:
        small(args, read_inputs())
