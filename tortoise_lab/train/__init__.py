"""Training the TorToiSe stack at a tiny size: the embedded model, and the same code for fine-tuning on your own
recordings.

Data flows through one module per stage::

    corpus.py     sentences -> espeak-ng speech (or a pure-torch stand-in), cached
    (models/quantizer.py: mel -> codes, k-means over stacked frames, and codes -> mel; the pipeline uses it too)
    ar.py         UnifiedVoice trained on (voice clips, text tokens, codes, stop) as TorToiSe's AR model is
    loop.py       the shared loop: seeded, resumable checkpoints, loss CSV and plot
    evaluate.py   held-out measures: stop rate, length ratio, DTW log-mel distance, word-swap discrimination
    decode.py     one prompt -> codes -> mel -> Griffin-Lim audio (models/griffin_lim.py), for evaluation
    run.py        run_training(TrainConfig): every stage, resumable; ``python -m tortoise_lab.train``
"""

from tortoise_lab.train.run import EMBEDDED_FILES, TrainConfig, TrainResult, run_training

__all__ = ["TrainConfig", "TrainResult", "run_training", "EMBEDDED_FILES"]
