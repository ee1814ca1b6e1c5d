"""Reference side of tests/parity/test_speaker_encoder.py (runs in .venv-ref, where scripts/setup-reference.sh installs
Resemblyzer 0.1.4 beside tortoise-tts, whose librosa and scipy it uses).

args: {"weights": the path of Resemblyzer's pretrained.pt}
inputs: NAME (N,) float32 audio at 16 kHz, one per case
writes: outputs.safetensors: NAME.prepared (preprocess_wav: loudness and pauses), NAME.mel (wav_to_mel_spectrogram
        of it), NAME.embedding (VoiceEncoder.embed_utterance of it)
"""

import torch
from _common import read_args, read_inputs, write_outputs
from resemblyzer import VoiceEncoder, preprocess_wav
from resemblyzer.audio import wav_to_mel_spectrogram

args = read_args()
encoder = VoiceEncoder("cpu", verbose=False, weights_fpath=args["weights"])
outputs = {}
for name, wav in read_inputs().items():
    prepared = preprocess_wav(wav.numpy())  # no source rate given: the audio is 16 kHz already, not resampled
    outputs[f"{name}.prepared"] = torch.from_numpy(prepared.copy())
    outputs[f"{name}.mel"] = torch.from_numpy(wav_to_mel_spectrogram(prepared))
    outputs[f"{name}.embedding"] = torch.from_numpy(encoder.embed_utterance(prepared))
write_outputs(outputs)
