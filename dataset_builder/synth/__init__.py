"""Procedural multitrack songs in the MUSDB18HQ layout: a band of drums, bass, chords and a sung lead.

`synthesize_corpus` writes `train/<track>/` and `test/<track>/` folders holding `bass.wav`, `drums.wav`,
`other.wav`, `vocals.wav` and `mixture.wav` (stereo PCM_16; the mixture is exactly the sum of the stems) and a
`corpus.json` with the seed and every song's parameters. Everything is drawn from the seed, so the same seed
gives byte-identical files. Songs vary in tempo, key, mode, progression, groove, timbres, arrangement (sections
where a stem is silent) and in the level of each stem, so the "correct" balance differs from song to song.

`plan` draws a song, `dsp` holds the signal building blocks, `drums`, `bass`, `chords` (the `other` stem) and
`vocals` render the stems, and `corpus` renders songs and writes the corpus.
"""

from mixingbuddy.hub.vocabulary_mixingbuddy import STEMS

from .corpus import NOMINAL_LUFS, PEAK_CEILING, render_song, synthesize_corpus
from .plan import LEVEL_SPREAD_DB, track_names

__all__ = [
    "LEVEL_SPREAD_DB",
    "NOMINAL_LUFS",
    "PEAK_CEILING",
    "STEMS",
    "render_song",
    "synthesize_corpus",
    "track_names",
]
