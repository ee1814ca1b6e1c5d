"""Experiments beside the training recipe, each measured and recorded in the README, none part of what ships:
``decoders`` trains a diffusion decoder (``diffusion``) and a UnivNet vocoder (``vocoder``) for the embedded model
and compares them with the code book and Griffin-Lim; ``codedecoder`` trains a learned code -> mel decoder and
measures it against the code book (it won, and ships); ``vqvae`` measures a VQ-VAE quantiser against k-means;
``crosseval`` measures a model set on another run's test sentences; ``paragraphs`` is the paragraph test. Reached as
``python -m tortoise_lab.train decoders|codedecoder|vqvae|crosseval|paragraphs ...`` (or ``tortoise-lab train
...``)."""


def chosen_stages(stages: str, known: tuple[str, ...]) -> list[str]:
    """An experiment's ``--stages`` value (comma-separated) as a list, every name one of ``known`` (ValueError
    naming the first that is not)."""
    chosen = [s for s in stages.split(",") if s]
    unknown = [s for s in chosen if s not in known]
    if unknown:
        raise ValueError(f"Unknown stage {unknown[0]!r}. Available: {', '.join(known)}.")
    return chosen
