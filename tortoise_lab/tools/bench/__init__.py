"""Time every stage of synthesis per option combination, beside upstream tortoise-tts on the same random weights.

    records = run_benchmark(quick=True, against_reference=True, out_dir="bench-out")

How it measures (see benchmarks/README.md):

* **Same weights.** Random, well-scaled weights at the official sizes (``tiny`` in quick mode) are made once by the
  reference environment (``benchmarks/ref_bench.py weights``), saved in the official file formats and cached under
  ``--weights-dir``; ours loads the very same files with ``official_models``. Random weights never emit the stop
  token, so every run draws exactly ``max_mel_tokens`` codes per sample: both sides do the same work.
* **Same work.** The same text, the same voice clips (``tom``'s, cut to the 6 s conditioning window so neither side
  crops at random), the same preset settings and seed. With the same seed our codes equal upstream's (the parity
  suite proves it; each record says whether it held here).
* **One process per configuration.** Peak memory (``ru_maxrss``) is then the configuration's own, and no cache,
  compiled graph or warm allocator carries over. A worker loads the models, prepares what is prepared once per
  model (the decoder, int8 copies, the voice's latent cache for configurations that use it), runs one untimed
  warm-up only for torch.compile, then the timed repeats, and prints one JSON record.
* **Medians** over the repeats, per stage and in total.

The benchmark is not a test: ``tests/test_bench.py`` only checks that quick mode runs and writes its files.
"""

from tortoise_lab.tools.bench.configs import CONFIGS, DEFAULT_CONFIGS, FASTER_PRESET, REPO, BenchConfig
from tortoise_lab.tools.bench.report import markdown_table, plot_records
from tortoise_lab.tools.bench.runner import ensure_weights, reference_python, run_benchmark, upstream_model_kwargs

__all__ = ["BenchConfig", "CONFIGS", "DEFAULT_CONFIGS", "FASTER_PRESET", "REPO", "run_benchmark", "ensure_weights",
           "upstream_model_kwargs", "markdown_table", "plot_records", "reference_python"]
