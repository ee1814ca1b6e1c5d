"""Reference side of tests/parity/test_tts.py: upstream's whole TextToSpeech.tts() on small random models.

args: {"gpt", "diffusion", "clvp", "cvvp", "vocoder", "hifigan": constructor kwargs; "seed": weights seed;
       "runs": [{"name", "text", "voice": "clips" | "random", "tts_seed", "settings": {...tts kwargs},
                 "batch_size"}],
       "fast_runs": [{"name", "text", "voice", "tts_seed", "settings"}]: the same through api_fast's tts}
inputs: clip_0, clip_1, ... (1, N) at 22.05 kHz (each shorter than 6 s)
writes: official-style .pth files of every model (hifidecoder.pth too); outputs: <name>_wav, <name>_codes (the chosen
        candidates' fixed-up codes; api_fast's: its one sample's codes, stop code included) and <name>_drawn (how many
        AR samples it drew) per run
"""


import torch
from _common import (cuda_means_cpu, randomize_, read_args, read_inputs, save_state, tame_kernel_predictors_,
                     write_outputs)
from tortoise.api import TextToSpeech
from tortoise.api_fast import TextToSpeech as FastTextToSpeech
from tortoise.models.hifigan_decoder import HifiganGenerator
from tortoise.models.autoregressive import UnifiedVoice
from tortoise.models.clvp import CLVP
from tortoise.models.cvvp import CVVP
from tortoise.models.diffusion_decoder import DiffusionTts
from tortoise.models.random_latent_generator import RandomLatentConverter
from tortoise.models.vocoder import UnivNetGenerator
from tortoise.utils.tokenizer import VoiceBpeTokenizer

args = read_args()
inputs = read_inputs()
clips = [inputs[f"clip_{i}"] for i in range(len(inputs))]
seed = args["seed"]

gpt = randomize_(UnifiedVoice(**args["gpt"], checkpointing=False, train_solo_embeddings=False).eval(), seed)
diffusion = randomize_(DiffusionTts(**args["diffusion"], dropout=0, use_fp16=False, layer_drop=0,
                                    unconditioned_percentage=0).eval(), seed + 1)
clvp = randomize_(CLVP(**args["clvp"], use_xformers=True).eval(), seed + 2)  # api.py builds it so
cvvp = randomize_(CVVP(**args["cvvp"]).eval(), seed + 3)
vocoder = randomize_(UnivNetGenerator(**args["vocoder"]), seed + 4)
tame_kernel_predictors_(vocoder)  # keep the random vocoder out of its chaotic regime
rlg_auto = randomize_(RandomLatentConverter(args["gpt"]["model_dim"]).eval(), seed + 5)
rlg_diffusion = randomize_(RandomLatentConverter(2 * args["diffusion"]["model_channels"]).eval(), seed + 6)

save_state(gpt, "autoregressive.pth")
save_state(diffusion, "diffusion_decoder.pth")
save_state(clvp, "clvp2.pth")
save_state(cvvp, "cvvp.pth")
save_state(vocoder, "vocoder.pth", wrap="model_g")
save_state(rlg_auto, "rlg_auto.pth")
save_state(rlg_diffusion, "rlg_diffuser.pth")
hifigan = randomize_(HifiganGenerator(**args["hifigan"]).eval(), seed + 7)  # weight norm kept, as api_fast runs it
save_state(hifigan, "hifidecoder.pth")

# TextToSpeech's constructor loads the official-size files; build it by hand around the small models instead.
vocoder.eval(inference=True)
gpt.post_init_gpt2_config(kv_cache=False)
tts = TextToSpeech.__new__(TextToSpeech)
tts.__dict__.update(
    models_dir=None, enable_redaction=False, device=torch.device("cpu"), tokenizer=VoiceBpeTokenizer(), half=False,
    autoregressive=gpt, diffusion=diffusion, clvp=clvp, cvvp=cvvp, vocoder=vocoder, rlg_auto=rlg_auto,
    rlg_diffusion=rlg_diffusion,
)

# Record the chosen candidates' codes: they reach the AR model's latent pass as its fourth argument.
chosen = {}
plain_forward = gpt.forward


def recording_forward(*a, **kw):
    if kw.get("return_latent"):
        chosen["codes"] = a[3].clone()
    return plain_forward(*a, **kw)


gpt.forward = recording_forward

# Count the AR samples drawn: upstream runs num_autoregressive_samples // batch_size batches.
drawn = {"rows": 0}
plain_inference = gpt.inference_speech


def counting_inference(*a, **kw):
    codes = plain_inference(*a, **kw)
    drawn["rows"] += codes.shape[0]
    return codes


gpt.inference_speech = counting_inference

outputs = {}
for run in args["runs"]:
    tts.autoregressive_batch_size = run["batch_size"]
    drawn["rows"] = 0
    voice = clips if run["voice"] == "clips" else None
    wav = tts.tts(run["text"], voice_samples=voice, k=1, verbose=False, use_deterministic_seed=run["tts_seed"],
                  **run["settings"])
    outputs[f"{run['name']}_wav"] = wav.reshape(1, -1)
    outputs[f"{run['name']}_codes"] = chosen.pop("codes")
    outputs[f"{run['name']}_drawn"] = torch.tensor([drawn["rows"]])


# api_fast's TextToSpeech around the same AR model, its HiFiGAN and its random-voice generator (built by hand too).
fast = FastTextToSpeech.__new__(FastTextToSpeech)
fast.__dict__.update(models_dir=None, enable_redaction=False, device=torch.device("cpu"), tokenizer=VoiceBpeTokenizer(),
                     half=False, autoregressive=gpt, hifi_decoder=hifigan, rlg_auto=rlg_auto)
for run in args.get("fast_runs", []):
    drawn["rows"] = 0
    voice = clips if run["voice"] == "clips" else None
    with torch.no_grad(), cuda_means_cpu():
        wav = fast.tts(run["text"], voice_samples=voice, k=1, verbose=False, use_deterministic_seed=run["tts_seed"],
                       **run["settings"])
    outputs[f"{run['name']}_wav"] = wav.reshape(1, -1)
    outputs[f"{run['name']}_codes"] = chosen.pop("codes")
    outputs[f"{run['name']}_drawn"] = torch.tensor([drawn["rows"]])
write_outputs(outputs)
