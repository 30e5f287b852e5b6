"""MixingBuddy's web page, a Gradio app in the Hugging Face Spaces convention: upload a mix, name the anchor and the
stems present, and get advice for every 10 s window, the song's verdict and a timeline. A model that hears more than
the mix (`audio_inputs`) gets an upload for the anchor stem ("mix+anchor") or for every stem ("stems") as well.

    python app.py --model DIR [--host HOST] [--port PORT]   # no --model: $MIXINGBUDDY_MODEL, else demo_out/model
    python app.py --study STUDY_DIR [--host HOST] [--port PORT]   # a listening study instead (no model is loaded)

`--study` serves the study that `mixingbuddy study prepare` wrote to STUDY_DIR (`mixingbuddy.study.page`): the page
asks for a participant code and the consent of `STUDY_DIR/consent.md`, then shows the items to rate; the ratings go to
`STUDY_DIR/ratings.sqlite`.

The page listens on --host and --port, else on GRADIO_SERVER_NAME and GRADIO_SERVER_PORT (a Space sets them), else on
127.0.0.1:7860. Gradio's analytics and version check are off (GRADIO_ANALYTICS_ENABLED=False, set by `import
mixingbuddy`, `mixingbuddy.NETWORK_DEFAULTS`) unless the environment sets GRADIO_ANALYTICS_ENABLED=True. A rejected
upload is deleted from Gradio's upload folder.

Needs the `app` extra (`pip install -e ".[app]"`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from mixingbuddy.cli import DEFAULT_MODEL  # first: importing mixingbuddy turns gradio's analytics off
from mixingbuddy.critique import (
    StemFiles, critique_audio, format_time, open_audio, other_lines, timeline_figure, window_advice,
)
from mixingbuddy.critique.inputs import STEM_FILE_NAMES, stem_files_by_name
from mixingbuddy.hub.vocabulary_mixingbuddy import STEMS, TARGET_STEMS
from mixingbuddy.models.checkpoints import load_model
from mixingbuddy.study.page import STUDY_CSS, Study, build_study_page

MAX_MINUTES = 20  # longer songs: the command line, `mixingbuddy critique`, takes any length
MAX_MEGABYTES = 200  # larger uploads get a message; Gradio itself refuses those over four times as large
STEMS_UPLOADED = "The upload of stems"
HEARS = {  # what the page says the loaded model hears, by `audio_inputs`
    "mix": "This model hears the mix only.",
    "mix+anchor": "This model hears the mix and the anchor stem: upload the anchor stem alone as well, at the mix's "
                  "sampling rate and length.",
    "stems": f"This model hears every stem and the mix: upload the stems as well, each named after its stem "
             f"({STEM_FILE_NAMES}), at the mix's sampling rate and length. The stems uploaded are the stems in the "
             "mix.",
}


def report_markdown(report: dict) -> str:
    summary = report["summary"]
    lines = [f"### Verdict: {summary['verdict']}", ""]
    lines += [f"- {line}" for line in other_lines(summary)]
    if report["skipped"]:
        lines.append(f"- {len(report['skipped'])} window(s) too quiet to judge")
    if report["stem_files"]:
        lines.append(f"- Heard beside the mix: {', '.join(Path(file).name for file in report['stem_files'].values())}")
    return "\n".join(lines)


def critique_upload(
    model, processor, model_name: str, path: str | None, anchor: str, stems, max_megabytes: float = MAX_MEGABYTES,
    upload_folder: str | None = None, stem_uploads: str | list[str] | None = None,
):
    """What the page shows for an upload: (verdict or error as markdown, rows of the window table, timeline figure).
    `stem_uploads` is what a model that hears more than the mix hears beside it: the anchor stem's file
    ("mix+anchor") or the stems' files ("stems"; they say which stems are in the mix, `stems` is not used).
    Files it cannot critique get a message that names the uploaded file, never a stack trace, and are deleted when
    they lie in `upload_folder` (Gradio's); a choice of stems it cannot use gets a message and keeps the file."""
    audio_inputs = processor.audio_inputs
    if path is None:
        return "### Cannot critique yet\n\nUpload a mix first.", [], None
    if audio_inputs != "mix" and not stem_uploads:
        return f"### Cannot critique yet\n\n{HEARS[audio_inputs]}", [], None
    if not stems and audio_inputs != "stems":  # critique_audio would take all four
        return f"### Cannot critique yet\n\nTick the stems in the mix, the anchor ({anchor}) among them.", [], None
    uploads = [path, *uploaded_paths(stem_uploads)]
    try:
        for upload in uploads:
            check_upload_size(upload, max_megabytes)
        audio = open_audio(path)
        if audio.seconds > MAX_MINUTES * 60:
            raise ValueError(f"{path} lasts {format_time(audio.seconds)}; this page takes songs of up to {MAX_MINUTES} "
                             "minutes (the command line, mixingbuddy critique, takes any length).")
        stem_files = uploaded_stem_files(audio_inputs, anchor, stem_uploads)
        report = critique_audio(audio, anchor, model, processor, stems, model_name=model_name, stem_files=stem_files)
    except (ValueError, OSError) as err:
        message = str(err)
        named = sorted((message.find(upload), upload) for upload in uploads if upload in message)
        if named:  # a file is refused, not the stems or the anchor: the one a message is about is the first it names
            discard_upload(named[0][1], upload_folder)
        for upload in uploads:
            message = message.replace(upload, Path(upload).name)
        return f"### Cannot critique this file\n\n{message}", [], None
    rows = [[format_time(w["start"]), format_time(w["end"]), window_advice(report, w)] for w in report["windows"]]
    rows += [[format_time(w["start"]), format_time(w["end"]), w["reason"]] for w in report["skipped"]]
    return report_markdown(report), sorted(rows), timeline_figure(report)


def uploaded_paths(uploads: str | list[str] | None) -> list[str]:
    """The paths of an upload box's files: none, one or several."""
    return [] if not uploads else [uploads] if isinstance(uploads, str) else list(uploads)


def check_upload_size(path: str, max_megabytes: float) -> None:
    """Raise `ValueError` naming the file when it is larger than the page takes."""
    megabytes = Path(path).stat().st_size / 1e6
    if megabytes > max_megabytes:
        raise ValueError(f"{path} is {megabytes:.1f} MB; this page takes files of up to {max_megabytes:g} MB (the "
                         "command line, mixingbuddy critique, takes any size).")


def uploaded_stem_files(audio_inputs: str, anchor: str, uploads: str | list[str] | None) -> StemFiles | None:
    """The uploaded stem files the model hears: the anchor stem's file, or the stems' files, each named after its stem
    (one that is not is refused, so that no stem is left out unseen)."""
    paths = uploaded_paths(uploads)
    if not paths:
        return None
    if audio_inputs == "mix+anchor":
        return StemFiles({anchor: Path(paths[0])}, "the anchor upload", Path(paths[0]).name)
    found = stem_files_by_name(paths, STEMS_UPLOADED)
    if unnamed := [Path(path).name for path in paths if Path(path) not in found.values()]:
        raise ValueError(f"{STEMS_UPLOADED} holds files not named after a stem, {', '.join(unnamed)}: name each stem "
                         f"file after its stem ({STEM_FILE_NAMES}), and leave out other files.")
    return StemFiles(found, "the upload of stems", STEMS_UPLOADED)


def discard_upload(path: str, upload_folder: str | None) -> None:
    """Delete the file `path`, and its folder once empty, if it lies inside `upload_folder`; a file elsewhere (a
    user's own) is left alone."""
    if upload_folder is None:
        return
    file, folder = Path(path).resolve(), Path(upload_folder).resolve()
    if folder in file.parents and file.is_file():
        file.unlink()
        if file.parent != folder and not any(file.parent.iterdir()):
            file.parent.rmdir()


def build_app(model_dir: str, max_megabytes: float = MAX_MEGABYTES):
    """The page, a `gradio.Blocks`, with the model loaded once."""
    import gradio as gr  # here, not above: importing gradio fails on a GRADIO_SERVER_PORT that is not a number

    model, processor = load_model(model_dir)
    audio_inputs = processor.audio_inputs

    def critique(path, anchor, stems, stem_uploads, progress=gr.Progress(track_tqdm=True)):
        shown = critique_upload(model, processor, model_dir, path, anchor, stems, max_megabytes, upload.GRADIO_CACHE,
                                stem_uploads)
        return *shown, kept_upload(path), kept_upload(stem_uploads)

    def kept_upload(files):
        """The upload box as it was, or emptied when a file of it was refused and deleted."""
        return gr.update() if all(Path(file).exists() for file in uploaded_paths(files)) else None

    def stem_upload_box():
        """The upload for what the model hears beside the mix: the anchor stem's file, the stems' files, or none."""
        if audio_inputs == "mix+anchor":
            return gr.File(label="Anchor stem alone (the anchor chosen on the right)", type="filepath",
                           elem_id="stem-upload")
        if audio_inputs == "stems":
            return gr.File(label=f"Stems in the mix, each named after its stem: {STEM_FILE_NAMES}", type="filepath",
                           file_count="multiple", elem_id="stem-upload")
        return gr.State(None)

    with gr.Blocks(title="MixingBuddy") as page:
        gr.Markdown("# MixingBuddy\nUpload a mix; name the stem whose level is right (the anchor) and the stems you "
                    "used. Each 10 s of the song gets gain-balance advice.")
        gr.Markdown(f"**{HEARS[audio_inputs]}**", elem_id="audio-inputs")
        with gr.Row():
            with gr.Column():
                upload = gr.File(label=f"Mix: WAV, FLAC, OGG or MP3, up to {MAX_MINUTES} minutes and "
                                       f"{max_megabytes:g} MB", type="filepath", elem_id="mix-upload")
                stem_uploads = stem_upload_box()
            with gr.Column():
                anchor = gr.Radio(list(TARGET_STEMS), value="vocals", label="Anchor: the stem whose level is right")
                stems = (gr.State(None) if audio_inputs == "stems" else
                         gr.CheckboxGroup(list(STEMS), value=list(STEMS), label="Stems in the mix"))
                button = gr.Button("Critique", variant="primary")
        verdict = gr.Markdown(elem_id="verdict")
        timeline = gr.Plot(label="Timeline")
        windows = gr.Dataframe(headers=["start", "end", "advice"], label="Advice per window", elem_id="windows", wrap=True,
                               column_widths=["10%", "10%", "80%"])
        button.click(critique, inputs=[upload, anchor, stems, stem_uploads],
                     outputs=[verdict, windows, timeline, upload, stem_uploads])
    return page


def server_address(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[str, int]:
    """Where the page listens: --host and --port, else GRADIO_SERVER_NAME and GRADIO_SERVER_PORT, else 127.0.0.1:7860.
    A GRADIO_SERVER_PORT that is not a port number is a ValueError even under --port: gradio reads it when imported."""
    ports = {"--port": args.port, "GRADIO_SERVER_PORT": environ.get("GRADIO_SERVER_PORT")}
    for name, value in ports.items():
        if value is not None and not (str(value).strip().isdigit() and 0 < int(value) < 65536):
            raise ValueError(f"{name} must be a port number (1 to 65535), got {value!r}")
    port = next((int(value) for value in ports.values() if value is not None), 7860)
    return args.host or environ.get("GRADIO_SERVER_NAME") or "127.0.0.1", port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    served = parser.add_mutually_exclusive_group()
    served.add_argument("--model", default=None,
                        help=f"model folder or Hub id (default: $MIXINGBUDDY_MODEL, else {DEFAULT_MODEL})")
    served.add_argument("--study", default=None, metavar="STUDY_DIR",
                        help="serve this listening study (made by `mixingbuddy study prepare`) instead of the critique")
    parser.add_argument("--host", default=None, help="default: $GRADIO_SERVER_NAME, else 127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: $GRADIO_SERVER_PORT, else 7860")
    parser.add_argument("--max-megabytes", type=float, default=MAX_MEGABYTES,
                        help=f"largest upload the page critiques (default: {MAX_MEGABYTES})")
    args = parser.parse_args(argv)
    try:
        host, port = server_address(args, os.environ)
    except ValueError as err:
        print(f"app.py: error: {err}", file=sys.stderr)
        return 2
    if args.study is not None:
        return serve_study(args.study, host, port)
    model = args.model or os.environ.get("MIXINGBUDDY_MODEL")
    if model is None and not Path(DEFAULT_MODEL).is_dir():
        print(f"app.py: error: no model: run `make demo` to make {DEFAULT_MODEL}, or pass --model DIR (or set "
              "MIXINGBUDDY_MODEL)", file=sys.stderr)
        return 2
    try:
        page = build_app(model or DEFAULT_MODEL, args.max_megabytes)
    except (ValueError, OSError) as err:
        print(f"app.py: error: {err}", file=sys.stderr)
        return 2
    return launch(page, host, port, max_file_size=f"{4 * args.max_megabytes:g}mb")


def serve_study(study_dir: str, host: str, port: int) -> int:
    """Serve the listening study in `study_dir`; refuse (exit 2) a folder without study.json or consent.md."""
    try:
        study = Study(study_dir)
    except (ValueError, OSError) as err:
        print(f"app.py: error: {err}", file=sys.stderr)
        return 2
    if study.consent_is_template():
        print(f"app.py: warning: {study.consent_file} is still the template: edit it before participants read it",
              file=sys.stderr)
    # Gradio may serve the items' audio files and nothing else of the folder: never the database
    return launch(build_study_page(study), host, port, allowed_paths=[str(path) for path in study.audio.values()],
                  css=STUDY_CSS)


def launch(page, host: str, port: int, **options) -> int:
    """Serve `page` until stopped; 2 with one line when it cannot listen on `host`:`port`."""
    try:
        page.launch(server_name=host, server_port=port, **options)
    except OSError:  # gradio's message names neither the host nor the flags
        print(f"app.py: error: cannot listen on {host}:{port}: the port is in use or the host is not this machine's; "
              "pass another --port or --host", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
