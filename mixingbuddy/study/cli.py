"""`mixingbuddy study prepare | export | report`: the listening study's commands (app.py --study serves it)."""

from __future__ import annotations

import argparse

from ..evaluation import DECODINGS


def prepare(args: argparse.Namespace) -> int:
    from .prepare import prepare_study

    out = prepare_study(
        args.model, args.dataset, args.split, args.items, args.out, seed=args.seed, second_model=args.second_model,
        reference=args.reference, stems=args.stems, cache_dir=args.cache_dir, batch_size=args.batch_size,
        decoding=args.decoding, overwrite=args.overwrite,
    )
    print(f"Wrote a study of {args.items} items to {out}: edit {out / 'consent.md'}, then serve it with "
          f"python app.py --study {out}")
    return 0


def export(args: argparse.Namespace) -> int:
    from .export import export_ratings

    out = export_ratings(args.study_dir, args.out, push_to_hub=args.push_to_hub, overwrite=args.overwrite)
    print(f"Wrote the ratings to {out}" + (f" and pushed them to {args.push_to_hub}" if args.push_to_hub else ""))
    return 0


def report(args: argparse.Namespace) -> int:
    from .report import REPORT_FOLDER, report_markdown, study_report

    result = study_report(args.study_dir, args.out, seed=args.seed, resamples=args.resamples)
    print(report_markdown(result))
    print(f"Wrote report.json, report.md and report.png to {args.out or f'{args.study_dir}/{REPORT_FOLDER}'}")
    return 0


def add_study_commands(commands) -> None:
    """`study` and its sub-commands, on the `mixingbuddy` command's sub-parsers."""
    study = commands.add_parser("study", help="a listening study: prepare items, export and report the ratings")
    steps = study.add_subparsers(dest="study_command", required=True, metavar="STEP")

    p = steps.add_parser("prepare", help="a study folder: N rows' flawed mixes and the model's advice on them")
    p.add_argument("--model", required=True, help="model folder or Hub id")
    p.add_argument("--dataset", required=True, help="data-set folder written by build-dataset, or a Hub id")
    p.add_argument("--split", default="test")
    p.add_argument("--items", type=int, required=True, help="rows to draw, balanced over the error categories")
    p.add_argument("--out", required=True, help="new folder for the study (it may hold only your consent.md)")
    p.add_argument("--second-model", default=None, metavar="MODEL",
                   help="also this model's advice on each mix, shown blind beside the first for an A/B comparison")
    p.add_argument("--reference", action="store_true",
                   help="also the data set's reference answer, shown blind beside the model's (not with "
                        "--second-model)")
    p.add_argument("--seed", type=int, default=0, help="draws the rows")
    p.add_argument("--stems", default=None,
                   help="the MUSDB18HQ-layout folder the data set was built from (default: the one it records)")
    p.add_argument("--cache-dir", default=None,
                   help="stem cache root (default: $MIXINGBUDDY_CACHE_DIR or ~/.cache/mixingbuddy/stems)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--decoding", choices=DECODINGS, default="ranked",
                   help="ranked (default) and constrained always give valid advice; greedy is the model's own words")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier study folder that has no ratings")
    p.set_defaults(func=prepare)

    p = steps.add_parser("export", help="the ratings with their items' facts as a datasets Parquet folder")
    p.add_argument("study_dir", metavar="STUDY_DIR")
    p.add_argument("--out", required=True, help="new folder for data/ratings-*.parquet and README.md")
    p.add_argument("--push-to-hub", metavar="REPO", default=None,
                   help="also upload the folder to this Hub dataset repo")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export")
    p.set_defaults(func=export)

    p = steps.add_parser("report", help="means with bootstrap intervals, agreement, A/B preference, the parser beside")
    p.add_argument("study_dir", metavar="STUDY_DIR")
    p.add_argument("--out", default=None,
                   help="folder for report.json, report.md and report.png (default: STUDY_DIR/report)")
    p.add_argument("--seed", type=int, default=0, help="seeds the bootstrap")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    p.set_defaults(func=report)
