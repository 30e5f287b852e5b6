"""MixingBuddy's web page, a Gradio app in the Hugging Face Spaces convention: upload a mix, name the anchor and the
stems present, and get advice for every 10 s window, the song's verdict and a timeline.

    python app.py --model DIR [--host HOST] [--port PORT]   # no --model: $MIXINGBUDDY_MODEL, else demo_out/model

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
from mixingbuddy.critique import critique_audio, format_time, open_audio, other_lines, timeline_figure, window_advice
from mixingbuddy.hub.vocabulary_mixingbuddy import STEMS, TARGET_STEMS
from mixingbuddy.models.checkpoints import load_model

MAX_MINUTES = 20  # longer songs: the command line, `mixingbuddy critique`, takes any length
MAX_MEGABYTES = 200  # larger uploads get a message; Gradio itself refuses those over four times as large


def report_markdown(report: dict) -> str:
    summary = report["summary"]
    lines = [f"### Verdict: {summary['verdict']}", ""]
    lines += [f"- {line}" for line in other_lines(summary)]
    if report["skipped"]:
        lines.append(f"- {len(report['skipped'])} window(s) too quiet to judge")
    return "\n".join(lines)


def critique_upload(
    model, processor, model_name: str, path: str | None, anchor: str, stems, max_megabytes: float = MAX_MEGABYTES,
    upload_folder: str | None = None,
):
    """What the page shows for an upload: (verdict or error as markdown, rows of the window table, timeline figure).
    Files it cannot critique get a message that names the uploaded file, never a stack trace, and are deleted when
    they lie in `upload_folder` (Gradio's); a choice of stems it cannot use gets a message and keeps the file."""
    if path is None:
        return "### Cannot critique yet\n\nUpload a mix first.", [], None
    if not stems:  # critique_audio would take all four
        return f"### Cannot critique yet\n\nTick the stems in the mix, the anchor ({anchor}) among them.", [], None
    try:
        megabytes = Path(path).stat().st_size / 1e6
        if megabytes > max_megabytes:
            raise ValueError(f"{path} is {megabytes:.1f} MB; this page takes files of up to {max_megabytes:g} MB (the "
                             "command line, mixingbuddy critique, takes any size).")
        audio = open_audio(path)
        if audio.seconds > MAX_MINUTES * 60:
            raise ValueError(f"{path} lasts {format_time(audio.seconds)}; this page takes songs of up to {MAX_MINUTES} "
                             "minutes (the command line, mixingbuddy critique, takes any length).")
        report = critique_audio(audio, anchor, model, processor, stems, model_name=model_name)
    except (ValueError, OSError) as err:
        if str(path) in str(err):  # the file is refused, not the stems or the anchor
            discard_upload(path, upload_folder)
        return f"### Cannot critique this file\n\n{str(err).replace(str(path), Path(path).name)}", [], None
    rows = [[format_time(w["start"]), format_time(w["end"]), window_advice(report, w)] for w in report["windows"]]
    rows += [[format_time(w["start"]), format_time(w["end"]), w["reason"]] for w in report["skipped"]]
    return report_markdown(report), sorted(rows), timeline_figure(report)


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

    def critique(path, anchor, stems, progress=gr.Progress(track_tqdm=True)):
        shown = critique_upload(model, processor, model_dir, path, anchor, stems, max_megabytes, upload.GRADIO_CACHE)
        return *shown, gr.update() if path is None or Path(path).exists() else None  # a deleted upload leaves the box

    with gr.Blocks(title="MixingBuddy") as page:
        gr.Markdown("# MixingBuddy\nUpload a mix; name the stem whose level is right (the anchor) and the stems you "
                    "used. Each 10 s of the song gets gain-balance advice.")
        with gr.Row():
            upload = gr.File(label=f"Mix: WAV, FLAC, OGG or MP3, up to {MAX_MINUTES} minutes and {max_megabytes:g} MB",
                             type="filepath")
            with gr.Column():
                anchor = gr.Radio(list(TARGET_STEMS), value="vocals", label="Anchor: the stem whose level is right")
                stems = gr.CheckboxGroup(list(STEMS), value=list(STEMS), label="Stems in the mix")
                button = gr.Button("Critique", variant="primary")
        verdict = gr.Markdown(elem_id="verdict")
        timeline = gr.Plot(label="Timeline")
        windows = gr.Dataframe(headers=["start", "end", "advice"], label="Advice per window", elem_id="windows", wrap=True,
                               column_widths=["10%", "10%", "80%"])
        button.click(critique, inputs=[upload, anchor, stems], outputs=[verdict, windows, timeline, upload])
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
    parser.add_argument("--model", default=None,
                        help=f"model folder or Hub id (default: $MIXINGBUDDY_MODEL, else {DEFAULT_MODEL})")
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
    try:
        page.launch(server_name=host, server_port=port, max_file_size=f"{4 * args.max_megabytes:g}mb")
    except OSError:  # gradio's message names neither the host nor the flags
        print(f"app.py: error: cannot listen on {host}:{port}: the port is in use or the host is not this machine's; "
              "pass another --port or --host", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
