"""`mixingbuddy synth-stems` and `mixingbuddy build-dataset`."""

from __future__ import annotations

import argparse
import sys

from .gating import GatingThresholds

GATING_OPTIONS = {  # flag -> (MixingBuddyGainConfig field, help)
    "--min-mixture-db": ("mixture_min_rms_db", "least mixture RMS of a chunk, dBFS"),
    "--min-stem-db": ("stem_min_rms_db", "least RMS of every stem in a chunk, dBFS"),
    "--active-frame-db": ("frame_active_rms_db", "a 50 ms mixture frame is active above this RMS, dBFS"),
    "--min-active-fraction": ("min_active_fraction", "least share of active frames"),
}


def synth_stems(args: argparse.Namespace) -> int:
    from .synth import synthesize_corpus

    try:
        synthesize_corpus(
            args.out, args.songs, args.seconds, args.seed, sample_rate=args.sample_rate, test_songs=args.test_songs,
            level_spread_db=args.level_spread_db, channels=args.channels, engine=args.engine,
            mixing_chain=args.mixing_chain,
        )
    except ImportError as error:  # the soundfont engine's renderer is not installed: its message says how
        print(f"mixingbuddy synth-stems: {error}", file=sys.stderr)
        return 2
    print(f"Wrote a synthetic MUSDB18HQ-layout corpus to {args.out}")
    return 0


def config_overrides(args: argparse.Namespace) -> dict:
    """The `MixingBuddyGainConfig` fields given on the command line."""
    fields = ("validation_fraction", *(field for field, _ in GATING_OPTIONS.values()))
    return {field: getattr(args, field) for field in fields if getattr(args, field) is not None}


def build_dataset(args: argparse.Namespace) -> int:
    from .build import build_dataset

    stats = build_dataset(
        args.stems,
        args.out,
        args.config,
        seed=args.seed,
        num_proc=args.num_proc,
        cache_dir=args.cache_dir,
        overwrite=args.overwrite,
        push_to_hub=args.push_to_hub,
        **config_overrides(args),
    )
    for split, s in stats["splits"].items():
        gating = s["gating"]
        print(f"{split}: {s['rows']} rows from {gating['kept']} of {gating['chunks']} chunks")
    print(f"Wrote {args.out}" + (f" and pushed it to {args.push_to_hub}" if args.push_to_hub else ""))
    return 0


def add_dataset_commands(commands) -> None:
    """Register the data-set sub-commands on the `mixingbuddy` parser."""
    p = commands.add_parser("synth-stems", help="write a synthetic MUSDB18HQ-layout corpus of 4-stem songs")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--songs", type=int, required=True, help="number of songs (train and test)")
    p.add_argument("--seconds", type=float, required=True, help="length of each song")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-songs", type=int, default=None, help="how many of the songs go to test/ (default: a fifth)")
    p.add_argument("--sample-rate", type=int, default=44100)
    p.add_argument("--channels", type=int, default=2, choices=(1, 2),
                   help="2: stereo, as MUSDB18HQ; 1: mono (with --sample-rate 24000, read in place, without a stem cache)")
    p.add_argument("--level-spread-db", type=float, default=3.0,
                   help="each song draws each stem's loudness within ±this many dB of its nominal one (default: 3)")
    p.add_argument("--engine", choices=("procedural", "soundfont", "both"), default="procedural",
                   help="procedural: oscillators; soundfont: General MIDI instruments from a SoundFont (Debian's "
                        "fluid-soundfont-gm, or MIXINGBUDDY_SOUNDFONT); both: alternate songs (default: procedural)")
    p.add_argument("--mixing-chain", action=argparse.BooleanOptionalAction, default=True,
                   help="pan, reverb, compress and EQ each stem and limit the mix bus, drawn from the song's seed "
                        "(default: on)")
    p.set_defaults(func=synth_stems)

    p = commands.add_parser("build-dataset", help="build the flawed-mix data set (Parquet + card) from a stems folder")
    p.add_argument(
        "--stems", required=True, help="MUSDB18HQ-layout folder: train/<track>/{bass,drums,other,vocals}.wav, test/..."
    )
    p.add_argument(
        "--config",
        choices=("expanded", "sampled"),
        default="expanded",
        help="expanded: 30 rows per chunk (the paper); sampled: one",
    )
    p.add_argument("--out", required=True, help="output folder (written atomically)")
    p.add_argument("--num-proc", type=int, default=None, help="processes for decoding and generation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--cache-dir",
        default=None,
        help="stem cache root (default: $MIXINGBUDDY_CACHE_DIR or ~/.cache/mixingbuddy/stems)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument(
        "--push-to-hub", metavar="REPO", default=None, help="also upload the folder to this Hub dataset repo"
    )
    p.add_argument(
        "--validation-fraction",
        type=float,
        help="share of train tracks held out when MUSDB's validation tracks are absent (default 0.14)",
    )
    for flag, (field, help) in GATING_OPTIONS.items():
        p.add_argument(
            flag, dest=field, type=float, help=f"gating: {help} (default {getattr(GatingThresholds, field)})"
        )
    p.set_defaults(func=build_dataset)
