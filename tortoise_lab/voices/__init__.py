"""Voices: who the speech sounds like.

* ``library``: voice folders and saved-latents files found by name, blends (``a&b``, ``a:0.7&b:0.3``), the random
  voice, and the conditioning-latent cache kept beside each voice. Its public names are re-exported here, so
  ``from tortoise_lab.voices import load_voice`` is the way in.
* ``prep``: raw recordings of one speaker -> a clean voice folder of short clips, with a report
  (``recording`` holds the signal steps for one recording, ``report`` what is recorded about them).
  ``recording`` also holds the clip checks, made once for both: preparation drops a bad recording with them, and
  ``load_voice`` refuses a clip that cannot be used (``ValueError``) and notes one that is usable but flawed
  (``Voice.notes``, copied into ``Speech.notes``).
* ``seed_search``: the seed whose output sounds most like the voice's own clips. It is handed a ``TextToSpeech``
  (the layer above), so it is imported by its own name (``tortoise_lab.voices.seed_search``), not from here.
"""

from tortoise_lab.voices.library import (AUDIO_SUFFIXES, BLEND_SEPARATOR, CACHE_FOLDER, LATENT_SUFFIXES,
                                         PACKAGED_VOICES, PROJECT_VOICES, RANDOM_VOICE, WEIGHT_SEPARATOR, LatentCache, Voice,
                                         VoiceInfo, available_voices, describe_voices, load_voice,
                                         parse_voice_spec, read_latents_file, user_voices_dir, voice_dirs)

__all__ = ["RANDOM_VOICE", "BLEND_SEPARATOR", "WEIGHT_SEPARATOR", "AUDIO_SUFFIXES", "LATENT_SUFFIXES", "CACHE_FOLDER",
           "PROJECT_VOICES", "PACKAGED_VOICES", "Voice", "VoiceInfo", "user_voices_dir", "voice_dirs", "available_voices",
           "describe_voices", "load_voice", "parse_voice_spec", "read_latents_file", "LatentCache"]
