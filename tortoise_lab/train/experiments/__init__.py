"""Experiments beside the training recipe, each measured and recorded in the README, none part of what ships:
``decoders`` trains a diffusion decoder (``diffusion``) and a UnivNet vocoder (``vocoder``) for the embedded model
and compares them with the code book and Griffin-Lim; ``vqvae`` measures a VQ-VAE quantiser against k-means;
``crosseval`` measures a model set on another run's test sentences. Reached as
``python -m tortoise_lab.train decoders|vqvae|crosseval ...`` (or ``tortoise-lab train ...``)."""
