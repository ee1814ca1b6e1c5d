"""Measuring: ``compare`` (how two renderings differ: log-mel distance, MCD after DTW, SNR) and ``bench`` (speed per
stage and option, beside the reference implementation)."""
