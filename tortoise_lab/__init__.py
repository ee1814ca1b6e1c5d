"""tortoise_lab: a research workspace for TorToiSe text-to-speech."""

__version__ = "0.1.0"
