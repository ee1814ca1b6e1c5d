"""Clone quality as a number, for the notebooks: how much recordings, clips and takes sound like one voice, on one
similarity axis (``voices.similarity``), as a table and a strip plot."""

from __future__ import annotations

import torch

from tortoise_lab.audio import INPUT_SAMPLE_RATE
from tortoise_lab.voices import Voice
from tortoise_lab.voices.similarity import SpeakerMeasure, clip_scores, similarity_to_voice

__all__ = ["likeness_groups", "likeness_rows", "plot_likeness"]


def likeness_groups(voice: Voice, scorer: SpeakerMeasure, **groups: list[tuple[torch.Tensor, int]]
                    ) -> dict[str, list[float]]:
    """The voice's own clips (each against the others: the ceiling), then each named group of (wav, rate) scored
    against the voice: {"clips": [...], name: [...], ...}."""
    scores = {"clips": clip_scores(voice, scorer)}
    for name, items in groups.items():
        scores[name] = [similarity_to_voice(wav, rate or INPUT_SAMPLE_RATE, voice, scorer) for wav, rate in items]
    return scores


def likeness_rows(scores: dict[str, list[float]]) -> list[tuple]:
    """(group, count, mean, lowest, highest) per group, for ``markdown_table``."""
    return [(name, len(values), f"{sum(values) / len(values):.3f}", f"{min(values):.3f}", f"{max(values):.3f}")
            for name, values in scores.items() if values]


def plot_likeness(scores: dict[str, list[float]], measure: str, title: str = ""):
    """One row of dots per group on a shared similarity axis, each group's mean marked; returns the figure."""
    import matplotlib.pyplot as plt

    named = [(name, values) for name, values in scores.items() if values]
    figure, axis = plt.subplots(figsize=(8, 0.6 + 0.55 * len(named)), constrained_layout=True)
    for row, (name, values) in enumerate(named):
        axis.scatter(values, [row] * len(values), s=36, alpha=0.75)
        axis.plot([sum(values) / len(values)] * 2, [row - 0.3, row + 0.3], color="black", linewidth=1.5)
    axis.set_yticks(range(len(named)), [name for name, _ in named])
    axis.invert_yaxis()
    axis.set_xlabel(f"similarity to the voice ({measure}; 1 = the same)")
    axis.grid(axis="x", alpha=0.3)
    axis.set_title(title or "how much each sounds like the voice (bar: the mean)")
    return figure
