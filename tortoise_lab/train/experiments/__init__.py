"""Experiments beside the training recipe, each measured and recorded in the README, none part of what ships:
``decoders`` trains a diffusion decoder (``diffusion``) and a UnivNet vocoder (``vocoder``) for the embedded model
and compares them with the code book and Griffin-Lim; ``codedecoder`` trains a learned code -> mel decoder and
measures it against the code book (it won, and ships); ``vqvae`` measures a VQ-VAE quantiser against k-means;
``crosseval`` measures a model set on another run's test sentences; ``paragraphs`` is the paragraph test. Reached as
``python -m tortoise_lab.train decoders|codedecoder|vqvae|crosseval|paragraphs ...`` (or ``tortoise-lab train
...``)."""
