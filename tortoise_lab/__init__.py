"""tortoise_lab: a research workspace for TorToiSe text-to-speech.

The package in the order the data flows (the notebook that shows each step in brackets):

    text      text.py               cleaning, the BPE tokenizer, chunk_text          -> tokens   [01_installation]
    voice     voices/               folders, blends, prepared recordings             -> clips    [04_custom_voice]
              stages/conditioning   clips -> conditioning latents (the latent cache)            [04_custom_voice]
    codes     stages/sampling       latents + tokens -> codes: the decode loop, the KV cache, and
                                    the speed-ups of fast/ (half, compile, int8, DeepSpeed)     [03_optimisations]
    ranking   stages/rerank         codes -> scores (CLVP + CVVP, or the AR likelihood)         [02_presets]
    decode    stages/decode         best codes -> AR latents -> diffusion (stages/diffusion_sampler) -> mel
                                    -> UnivNet -> wav; or code decoder -> Griffin-Lim           [02_presets]
              stages/redaction      [bracketed] text cut out of the wav
              stages/streaming      the fast path's latents -> audio piece by piece as drawn     [07_streaming]
    the run   config.py             Settings, presets, constants; model_set.py: what a model set holds and
                                    resolve_models; pipeline.py: TextToSpeech, every stage in order  [01, 02];
                                    speech.py: what a run returns (Speech, SpeechStream)
    faces     reading.py (long texts), cluster/ (long texts on Ray workers), outputs.py (sidecars), tools/
              (compare, bench), workspace/ and
              widgets.py (notebooks, the Playground [05_playground]), cli/ (the `tortoise-lab` command)

Underneath: files.py (atomic writes), device.py, assets.py, checkpoints.py, audio.py, models/ (one network per
file). Apart: train/ (the embedded model's training recipe, and experiments/). README.md's layout section has the
whole map.
"""

import os as _os

__version__ = "0.1.0"

# Large tensors on transparent huge pages: with THP_MEM_ALLOC_ENABLE=1 PyTorch's CPU allocator asks the kernel for
# 2 MB pages (madvise) for every allocation of 2 MB or more. It reads the variable once, at its first allocation, so
# this takes effect when tortoise_lab is imported before torch allocates anything: the CLI, the benchmark's
# workers, code that imports tortoise_lab first. Same numbers; a decode step, which streams the model's weights
# from memory, runs about a tenth faster (benchmarks/README.md, "The fast path and streaming"). A value set
# beforehand (THP_MEM_ALLOC_ENABLE=0 turns it off) is left alone; HUGE_PAGES_BY_DEFAULT says whether it was ours.
HUGE_PAGES_BY_DEFAULT = "THP_MEM_ALLOC_ENABLE" not in _os.environ
_os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
