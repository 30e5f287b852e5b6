"""The `mixingbuddy` command line: one sub-command per job; user errors exit with code 2 and one line."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

from .demo import DEMO_SECONDS, DEMO_SONGS
from .evaluation import DECODINGS
from .hub.vocabulary_mixingbuddy import AUDIO_INPUTS

DEFAULT_MODEL = "demo_out/model"  # what `mixingbuddy demo` leaves behind


def tiny_checkpoint(args: argparse.Namespace) -> int:
    from .models.tiny import save_tiny_checkpoint

    save_tiny_checkpoint(args.out, seed=args.seed)
    print(f"Wrote a tiny random MixingBuddy checkpoint to {args.out}")
    return 0


def convert(args: argparse.Namespace) -> int:
    from .models.convert import convert as convert_components

    config = {"audio_frontend": args.audio_frontend, "audio_pooling": args.audio_pooling,
              "aux_loss": None if args.aux_loss == "none" else args.aux_loss,
              "aux_loss_weight": args.aux_loss_weight, "projector_dropout": args.projector_dropout,
              "audio_inputs": args.audio_inputs, "clip_levels": args.clip_levels}
    if args.projector_hidden_sizes is not None:
        config["projector_hidden_sizes"] = args.projector_hidden_sizes
    if args.audio_frontend == "log_mel":
        config["mel_hop_length"] = args.mel_hop_length
    out = convert_components(args.audio_encoder, args.language_model, args.out, seed=args.seed,
                             max_shard_size=args.max_shard_size, overwrite=args.overwrite,
                             push_to_hub=args.push_to_hub, **config)
    print(f"Wrote an untrained MixingBuddy model to {out}: train it with train_sft.py --model_name_or_path {out}")
    return 0


def demo(args: argparse.Namespace) -> int:
    from .demo import DemoCheckError, run_demo

    try:
        run_demo(Path(args.out), seed=args.seed, songs=args.songs, seconds=args.seconds, max_steps=args.max_steps,
                 eval_limit=args.eval_limit, checks=not args.no_checks, overwrite=args.overwrite, threads=args.threads)
    except DemoCheckError as err:
        print(f"mixingbuddy demo: {err}", file=sys.stderr)
        return 1
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from dataset_builder.provenance import check_audio

    from .evaluation.generation import (
        check_evaluation_arguments, check_output, evaluate_split, evaluation_processes, on_main_process, start_output,
    )
    from .files import folder_fingerprint
    from .models.checkpoints import resolve_model

    check_device(args.device)
    decodings = tuple(dict.fromkeys(args.decoding))
    check_evaluation_arguments(decodings, args.batch_size, args.limit)
    model = resolve_model(args.model)
    if args.semantic_model is not None:
        resolve_model(args.semantic_model)  # a missing encoder fails now, not after the generator has loaded
    stems = check_audio(args.dataset, args.stems)
    run = {"model": args.model, "dataset": args.dataset, "split": args.split, "decodings": list(decodings),
           "batch_size": args.batch_size, "limit": args.limit, "load_in_4bit": args.load_in_4bit,
           "model_files": folder_fingerprint(model) if Path(model).is_dir() else None}
    processes = evaluation_processes(args.device)  # several under `accelerate launch`: they share the batches out
    output = {"out_dir": args.out, "run": run, "overwrite": args.overwrite, "resume": args.resume,
              "protected": {"stems folder": stems, "data set": args.dataset, "model": model}}
    out = on_main_process(processes, check_output, **output)  # nothing is written before the model has loaded
    try:
        results = evaluate_split(
            model, args.dataset, out, stems, split=args.split, batch_size=args.batch_size, limit=args.limit,
            decodings=decodings, cache_dir=args.cache_dir, resume=args.resume, device=args.device,
            dtype=torch_dtype(args.dtype), load_in_4bit=args.load_in_4bit, ranked_chunk_size=args.ranked_chunk_size,
            semantic_model=args.semantic_model, on_ready=functools.partial(start_output, **output),
        )
    finally:  # gloo's threads joined now: left to the interpreter's exit, rank 0 sometimes aborted after finishing
        processes.destroy_process_group()
    if not processes.is_main_process:
        return 0
    for decoding, metrics in results.items():
        o = metrics["overall"]
        print(
            f"{decoding}: joint {o['joint_accuracy']:.1%}, stem {o['stem_accuracy']:.1%}, direction "
            f"{o['direction_accuracy']:.1%}, magnitude {o['magnitude_accuracy']:.1%}, unparseable "
            f"{o['unparseable_share']:.1%}, impossible {o['impossible_share']:.1%}"
            + (f", semantic similarity {o['semantic_similarity']:.3f}" if "semantic_similarity" in o else "")
            + f" (n = {o['n']})"
        )
    print(f"Wrote predictions, metrics and plots to {args.out}")
    return 0


def judge(args: argparse.Namespace) -> int:
    from .evaluation.generation import check_output, start_output
    from .evaluation.judge import judge_predictions, judge_run
    from .evaluation.rubric import CRITERIA

    check_device(args.device)
    dtype = torch_dtype(args.dtype)
    run = judge_run(args.predictions, args.judge_model, limit=args.limit, constrained=args.constrained,
                    max_new_tokens=args.max_new_tokens, dtype=dtype, load_in_4bit=args.load_in_4bit)
    inputs = {"predictions": args.predictions, "judge model": args.judge_model, "study": args.study}
    output = {"out_dir": args.out, "run": run, "overwrite": args.overwrite, "resume": args.resume, "kind": "judgment",
              "protected": {name: path for name, path in inputs.items() if path is not None}}
    out = check_output(**output)  # nothing is written before the judge has loaded
    ratings = None
    if args.study is not None:
        from .study.export import study_rows

        ratings = study_rows(args.study)[1]
    summary = judge_predictions(
        args.predictions, args.judge_model, out, batch_size=args.batch_size, limit=args.limit,
        constrained=args.constrained, max_new_tokens=args.max_new_tokens, device=args.device, dtype=dtype,
        load_in_4bit=args.load_in_4bit, resume=args.resume, ratings=ratings, run=run,
        on_ready=functools.partial(start_output, **output),
    )
    overall = summary["overall"]
    means = ", ".join(f"{c} {overall[c]:.2f}" if overall[c] is not None else f"{c} -" for c in CRITERIA)
    print(f"Judged {overall['n']} answers ({overall['unreadable']} unreadable): {means}")
    if "human_agreement" in summary:
        human = summary["human_agreement"]
        print(f"{human['matched']} of the study's {human['rated_answers']} rated answers were judged; Spearman: "
              + ", ".join(f"{c} {human[c]:.3f}" if human[c] is not None else f"{c} -" for c in CRITERIA))
    print(f"Wrote judgments.jsonl, summary.json and summary.md to {args.out}")
    return 0


def critique(args: argparse.Namespace) -> int:
    from .critique import critique_file, format_critique

    check_device(args.device)
    report = critique_file(
        args.audio, anchor=args.anchor, model=args.model or DEFAULT_MODEL, stems=args.stems, hop_seconds=args.hop,
        decoding=args.decoding, batch_size=args.batch_size, model_is_default=args.model is None, device=args.device,
        dtype=torch_dtype(args.dtype), load_in_4bit=args.load_in_4bit, plot=args.plot, overwrite=args.overwrite,
        anchor_audio=args.anchor_audio, stems_dir=args.stems_dir,
    )
    print(json.dumps(report, indent=2) if args.json else format_critique(report))
    return 0


def export(args: argparse.Namespace) -> int:
    from .models.export import export_model

    check_device(args.device)
    out = export_model(args.model, args.out, dtype=torch_dtype(args.dtype), device=args.device,
                       overwrite=args.overwrite, eval_dir=args.eval_dir, push_to_hub=args.push_to_hub)
    print(f"Wrote {out}: loads with AutoModelForCausalLM.from_pretrained(..., trust_remote_code=True), no peft needed")
    return 0


def check_device(name: str | None) -> None:
    """Raise `ValueError` naming --device when torch cannot place a model on `name` here (None: the default)."""
    if name is None:
        return
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device torch knows; use cpu, cuda or cuda:N.") from None
    backend = getattr(torch, device.type, None)
    if not getattr(backend, "is_available", lambda: False)():
        raise ValueError(f"--device {name}: torch {torch.__version__} sees no {device.type} device; use --device cpu.")
    if device.index is not None and device.index >= backend.device_count():
        raise ValueError(f"--device {name}: there are only {backend.device_count()} {device.type} device(s).")


def torch_dtype(name: str | None):
    """"bfloat16" / "float32" -> the torch dtype; None (the default for the device) stays None."""
    import torch

    return None if name is None else getattr(torch, name)


def add_device_options(parser) -> None:
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu, ... (default: the GPU when there is one)")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default=None,
                        help="weights of the language model (default: bfloat16 on a GPU, float32 on the CPU); the "
                             "audio tower always runs in float32")
    parser.add_argument("--load-in-4bit", action="store_true",
                        help="the language model's linear layers in NF4, as QLoRA trains them (a QLoRA adapter then "
                             "computes what it computed in training; a 7B model needs ~6 GB)")


def add_model_commands(commands) -> None:
    p = commands.add_parser("tiny-checkpoint", help="write a tiny random model folder in Hub layout")
    p.add_argument("out", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=tiny_checkpoint)

    p = commands.add_parser("convert", help="one untrained model folder from an audio encoder and a language model")
    p.add_argument("--audio-encoder", default="m-a-p/MERT-v1-330M", help="MERT (HuBERT layout): Hub id or folder")
    p.add_argument("--language-model", default="Qwen/Qwen2-7B-Instruct", help="a Qwen2 chat model: Hub id or folder")
    p.add_argument("--out", required=True, help="new folder for the model (Hub layout)")
    p.add_argument("--audio-frontend", choices=("hubert", "log_mel"), default="hubert",
                   help="hubert: the audio encoder (the paper); log_mel: the light CPU front-end, no encoder read")
    p.add_argument("--audio-pooling", type=int, default=1, help="time pooling: 1 keeps 749 tokens per 10 s (the paper)")
    p.add_argument("--mel-hop-length", type=int, default=320, help="log-mel hop in samples at 24 kHz (log_mel only)")
    p.add_argument("--aux-loss", choices=("norm", "label", "none"), default="norm", type=str.lower)
    p.add_argument("--aux-loss-weight", type=float, default=0.05)
    p.add_argument("--audio-inputs", choices=AUDIO_INPUTS, default="mix",
                   help="what the model hears: mix (the paper), mix+anchor (the mix, then the anchor stem alone) or "
                        "stems (every stem, then the mix); critique then needs --anchor-audio or --stems-dir")
    p.add_argument("--clip-levels", action="store_true",
                   help="with mix+anchor or stems: give each clip's level relative to the mix to its tokens")
    p.add_argument("--projector-dropout", type=float, default=0.3)
    p.add_argument("--projector-hidden-sizes", type=int, nargs="+", default=None,
                   help="the projector's hidden widths (default: 2048 4096 4096 2048, the paper's)")
    p.add_argument("--seed", type=int, default=0, help="initialises the layer weights, projector and heads")
    p.add_argument("--max-shard-size", default="5GB", help="largest safetensors shard (default: 5GB)")
    p.add_argument("--push-to-hub", metavar="REPO", default=None, help="also upload the folder to this Hub model repo")
    p.add_argument("--overwrite", action="store_true", help="replace a model folder MixingBuddy wrote earlier")
    p.set_defaults(func=convert)

    p = commands.add_parser("demo", help="the offline demo: synthetic song, model, critique")
    p.add_argument("--out", default="demo_out", help="folder for everything the demo makes (default: demo_out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--songs", type=int, default=DEMO_SONGS, help=f"songs in the synthetic corpus (default: {DEMO_SONGS})")
    p.add_argument("--seconds", type=float, default=DEMO_SECONDS, help=f"length of each song (default: {DEMO_SECONDS:g})")
    p.add_argument("--max-steps", type=int, default=None, help="training steps (default: configs/tiny.yaml's)")
    p.add_argument("--eval-limit", type=int, default=None, help="evaluate the first N test rows only")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for every stage (default: torch's)")
    p.add_argument("--no-checks", action="store_true",
                   help="do not fail when the model collapsed or the critique misses the flaw (smoke runs of a few steps)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo folder made with other settings")
    p.set_defaults(func=demo)

    p = commands.add_parser("evaluate", help="generate advice for a data-set split and score it (the paper's Tables I-IV)")
    p.add_argument("--model", required=True, help="model folder or Hub id")
    p.add_argument("--dataset", required=True, help="data-set folder written by build-dataset, or a Hub id")
    p.add_argument("--stems", default=None,
                   help="the MUSDB18HQ-layout folder the data set was built from (default: the one it records)")
    p.add_argument("--split", default="test")
    p.add_argument("--out", required=True, help="new folder for predictions.jsonl, metrics.json, metrics.md and plots")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N rows only")
    p.add_argument("--decoding", nargs="+", choices=DECODINGS, default=["greedy"],
                   help="greedy (default); constrained: only valid advice can be generated; ranked: the valid advice "
                        "with the most probability summed over its wordings. The first goes to OUT, others to OUT/NAME")
    p.add_argument("--cache-dir", default=None,
                   help="stem cache root (default: $MIXINGBUDDY_CACHE_DIR or ~/.cache/mixingbuddy/stems)")
    p.add_argument("--ranked-chunk-size", type=int, default=None,
                   help="candidates ranked decoding scores at once; bounds its memory (default: one prompt's, ~90)")
    p.add_argument("--semantic-model", default=None, metavar="ID_OR_DIR",
                   help="a transformers encoder (e.g. sentence-transformers/all-MiniLM-L6-v2): adds each answer's "
                        "semantic similarity to the reference (mean-pooled embeddings, cosine) and its means")
    add_device_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation folder")
    p.add_argument("--resume", action="store_true", help="continue an interrupted evaluation with the same arguments")
    p.set_defaults(func=evaluate)

    p = commands.add_parser("judge", help="an LLM rates each answer of an evaluation on the listening study's criteria")
    p.add_argument("--predictions", required=True, help="a predictions.jsonl that mixingbuddy evaluate wrote")
    p.add_argument("--judge-model", required=True, metavar="ID_OR_DIR",
                   help="a chat model with a chat template (e.g. Qwen/Qwen2-7B-Instruct): Hub id or folder")
    p.add_argument("--out", required=True, help="new folder for judgments.jsonl, summary.json and summary.md")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--limit", type=int, default=None, help="judge the first N predictions only")
    p.add_argument("--max-new-tokens", type=int, default=32, help="longest reply the judge may write (default: 32)")
    p.add_argument("--constrained", action="store_true",
                   help="score each criterion by the judge's most likely digit 1-7 after 'criterion: ' instead of "
                        "reading a free reply (always readable; the digit probabilities are kept)")
    p.add_argument("--study", default=None, metavar="STUDY_DIR",
                   help="a listening-study folder: also report the judge's rank correlation with its ratings")
    add_device_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace an earlier judgment folder")
    p.add_argument("--resume", action="store_true", help="continue an interrupted judgment with the same arguments")
    p.set_defaults(func=judge)

    p = commands.add_parser("export", help="a training result (full, LoRA or QLoRA) as one plain Hub folder")
    p.add_argument("--model", required=True, help="what train_sft.py wrote (its output_dir), or a model folder")
    p.add_argument("--out", required=True, help="new folder for the merged model")
    p.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16",
                   help="weights of everything but the audio tower (default: bfloat16)")
    p.add_argument("--device", default="cpu", help="where to dequantize and merge (default: cpu)")
    p.add_argument("--eval-dir", default=None, help="a folder mixingbuddy evaluate wrote: its metrics go in the card")
    p.add_argument("--push-to-hub", metavar="REPO", default=None, help="also upload the folder to this Hub model repo")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export")
    p.set_defaults(func=export)

    p = commands.add_parser("critique", help="gain-balance advice for a whole song, window by window, and a verdict")
    p.add_argument("audio", help="an audio file soundfile can read (WAV, FLAC, OGG, MP3, ...), any rate and channels")
    p.add_argument("--anchor", required=True, help="the stem whose level is right: bass, drums or vocals")
    p.add_argument("--model", default=None, help=f"model folder or Hub id (default: {DEFAULT_MODEL})")
    p.add_argument("--stems", type=lambda text: text.split(","), default=None, metavar="STEM,STEM,...",
                   help="the stems present in the mix, comma-separated (default: bass,drums,other,vocals; for a model "
                        "that hears every stem, those of --stems-dir)")
    p.add_argument("--anchor-audio", default=None, metavar="FILE",
                   help="the anchor stem alone, for a model that hears it beside the mix (audio_inputs=mix+anchor): "
                        "the mix's sampling rate and length in frames")
    p.add_argument("--stems-dir", default=None, metavar="DIR",
                   help="a folder of the stems in the mix, each named after its stem (bass.wav, drums.wav, other.wav, "
                        "vocals.wav; any audio extension), for a model that hears every stem (audio_inputs=stems) or "
                        "the anchor (mix+anchor; not with --anchor-audio): the mix's sampling rate and length in "
                        "frames")
    p.add_argument("--hop", type=float, default=None,
                   help="seconds between window starts, at most the clip length (default: the clip length, 10)")
    p.add_argument("--decoding", choices=DECODINGS, default="ranked",
                   help="ranked (default) and constrained always give valid advice; greedy is the model's own words")
    p.add_argument("--batch-size", type=int, default=8, help="windows judged at once")
    p.add_argument("--json", action="store_true", help="print the report as JSON (schema: README, Critique your mix)")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="also write the timeline as a PNG")
    p.add_argument("--overwrite", action="store_true", help="replace the --plot PNG of an earlier critique")
    add_device_options(p)
    p.set_defaults(func=critique)


def build_parser() -> argparse.ArgumentParser:
    from dataset_builder.cli import add_dataset_commands

    from .study.cli import add_study_commands

    parser = argparse.ArgumentParser(prog="mixingbuddy", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_model_commands(commands)
    add_dataset_commands(commands)
    add_study_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (ValueError, OSError) as err:  # bad input from the user: one line, no traceback
        print(f"mixingbuddy {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
