"""The critique of a whole song: window maths, quiet windows, the verdict, the JSON report and the timeline, odd and
bad files through the command line, and the stem files a model that hears more than the mix hears beside it."""

import json
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from helpers import INVALID_AUDIO as INVALID

from mixingbuddy.cli import main
from mixingbuddy.critique import critique_audio, format_critique, given_stem_files, open_audio, window_advice
from mixingbuddy.critique.summary import summarize
from mixingbuddy.critique.windows import too_quiet, window_spans
from mixingbuddy.hub.vocabulary_mixingbuddy import advice_validity, format_response
from mixingbuddy.models.tiny import build_tiny_model_and_processor, save_tiny_checkpoint

RATE = 24000
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("critique") / "model")


def noise(seconds: float, rate: int = RATE, channels: int = 2, level: float = 0.1, seed: int = 0) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal((int(seconds * rate), channels))).astype(np.float32)


# Window maths


@pytest.mark.parametrize("seconds, hop, expected", [
    (35, None, [(0, 10), (10, 20), (20, 30), (25, 35)]),  # the last window ends at the song's end
    (30, None, [(0, 10), (10, 20), (20, 30)]),
    (5, None, [(0, 5)]),  # shorter than a clip: one window
    (22, 5, [(0, 10), (5, 15), (10, 20), (12, 22)]),
])
def test_windows_cover_the_whole_song_and_none_is_mostly_padding(seconds, hop, expected):
    spans = window_spans(seconds * RATE, RATE, 10.0, hop)
    assert [(start // RATE, stop // RATE) for start, stop in spans] == expected
    covered = np.zeros(seconds * RATE, dtype=bool)
    for start, stop in spans:
        covered[start:stop] = True
        assert stop - start == min(10 * RATE, seconds * RATE)
    assert covered.all() and spans[-1][1] == seconds * RATE


@pytest.mark.parametrize("hop", [0, -1, 10.5])
def test_a_hop_that_would_leave_gaps_is_refused(hop):
    with pytest.raises(ValueError, match=r"--hop must lie in \(0, 10\] seconds"):
        window_spans(60 * RATE, RATE, 10.0, hop)


def test_quiet_windows_are_not_judged():
    loud = noise(10, channels=1)[:, 0]
    assert too_quiet(loud, RATE) is None
    assert "mix below -35 dBFS" in too_quiet(loud * 10 ** (-40 / 20), RATE)
    assert "mix below -35 dBFS" in too_quiet(np.zeros(10 * RATE, dtype=np.float32), RATE)
    sparse = loud.copy()
    sparse[RATE:] = 0  # sound in 10 % of the window, loud enough overall
    assert "sound in under 20% of the window" in too_quiet(sparse * 3, RATE)


# The verdict


def window(start, stem, direction, low=3.0, high=6.0):
    balanced = direction == "none"
    return {"start": start, "end": start + 10, "advice": "...", "stem": None if balanced else stem,
            "direction": direction, "min_db": None if balanced else low, "max_db": None if balanced else high}


def test_windows_that_agree_are_merged_and_give_the_verdict():
    windows = [window(0, None, "none")] + [window(10 * i, "vocals", "increase") for i in range(1, 5)]
    windows += [window(50, "drums", "decrease", 6.0, 12.0)]
    summary = summarize(windows)
    assert summary["conclusive"]
    assert summary["verdict"] == "vocals too quiet in 4 of 6 windows (0:10–0:50): raise them 3–6 dB"
    assert summary["lines"][1:] == ["balanced in 1 of 6 windows (0:00–0:10)",
                                    "drums too loud in 1 of 6 windows (0:50–1:00): lower them 6–12 dB"]
    assert [(s["start"], s["end"], s["stem"], s["windows"]) for s in summary["segments"]] == [
        (0, 10, None, 1), (10, 50, "vocals", 4), (50, 60, "drums", 1)]
    bass = summarize([window(0, "bass", "decrease")])
    assert bass["verdict"] == "bass too loud in 1 of 1 windows (0:00–0:10): lower it 3–6 dB"


def test_a_window_is_shown_without_the_sentence_every_window_shares():
    report = {"anchor": "vocals", "stems": ["bass", "drums", "other", "vocals"]}
    advice = format_response("loud", "drums", 0, "vocals")
    assert advice.startswith("With the vocals as the reference, I compared the bass and the drums. ")
    assert window_advice(report, {"advice": advice}) == format_response("loud", "drums", 0)
    other = "Turn the drums down a little."  # the model's own words, without the opening: shown whole
    assert window_advice(report, {"advice": other}) == other
    no_vocals = {"anchor": "bass", "stems": ["bass", "drums", "other"]}
    assert window_advice(no_vocals, {"advice": format_response("quiet", "drums", 1, "bass", no_vocals["stems"])}) == (
        format_response("quiet", "drums", 1))


def test_windows_that_disagree_too_much_give_no_verdict():
    windows = [window(0, "bass", "increase"), window(10, "drums", "decrease"), window(20, None, "none")]
    summary = summarize(windows)
    assert not summary["conclusive"] and summary["verdict"] == "the windows disagree too much to conclude"
    assert len(summary["lines"]) == 3
    assert summarize([])["verdict"] == "nothing to judge: every window is too quiet"


def test_the_critique_reads_windows_one_at_a_time(tmp_path):
    """Half an hour of audio (mostly silent, so that it is quick) in bounded memory: never the whole file at once."""
    model, processor = build_tiny_model_and_processor()
    path = tmp_path / "long.wav"
    with sf.SoundFile(path, "w", samplerate=22050, channels=2, subtype="PCM_16") as file:
        for minute in range(30):
            block = np.zeros((60 * 22050, 2), dtype=np.float32)
            if minute in (3, 17):
                block[:] = noise(60, 22050, seed=minute)
            file.write(block)
    tracemalloc.start()
    report = critique_audio(open_audio(path), "vocals", model, processor, decoding="greedy", batch_size=4)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert report["duration_seconds"] == 1800.0 and len(report["windows"]) == 12 and len(report["skipped"]) == 168
    assert peak < 60 * 2**20  # the file decoded whole would be 635 MB


# The command line: the JSON report, the plot, and odd and bad files


def critique(capsys, *argv):
    code = main(["critique", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_json_report_follows_its_schema(checkpoint, tmp_path, capsys):
    path = tmp_path / "song.flac"
    audio = noise(35, 44100)
    audio[10 * 44100 : 20 * 44100] = 0
    sf.write(path, audio, 44100)
    code, out, _ = critique(capsys, path, "--anchor", "drums", "--stems", "bass,drums,vocals", "--model", checkpoint,
                            "--json", "--plot", tmp_path / "timeline.png")
    assert code == 0
    report = json.loads(out)
    assert set(report) == {"file", "anchor", "stems", "model", "decoding", "hop_seconds", "duration_seconds",
                           "audio_inputs", "stem_files", "windows", "skipped", "summary"}
    assert (report["anchor"], report["stems"], report["decoding"]) == ("drums", ["bass", "drums", "vocals"], "ranked")
    assert (report["audio_inputs"], report["stem_files"]) == ("mix", {})
    assert [(w["start"], w["end"]) for w in report["windows"]] == [(0, 10), (20, 30), (25, 35)]
    assert report["skipped"] == [{"start": 10.0, "end": 20.0, "reason": "too quiet to judge (mix below -35 dBFS)"}]
    for w in report["windows"]:
        assert set(w) == {"start", "end", "advice", "stem", "direction", "min_db", "max_db"}
        reading = {key: w[key] for key in ("stem", "direction", "min_db", "max_db")}
        assert advice_validity(reading, ["bass", "drums", "vocals"], "drums") == "valid"  # never the anchor or "other"
    assert set(report["summary"]) == {"verdict", "conclusive", "lines", "segments"}
    assert (tmp_path / "timeline.png").read_bytes().startswith(PNG)


def sine(seconds, rate, channels, level=0.3):
    t = np.arange(int(seconds * rate)) / rate
    return np.repeat((level * np.sin(2 * np.pi * 220 * t))[:, None], channels, axis=1).astype(np.float32)


VALID = {
    "silent.wav": lambda p: sf.write(p, np.zeros((15 * RATE, 2), dtype=np.float32), RATE),
    "clipped.wav": lambda p: sf.write(p, np.clip(noise(15, level=0.9), -1, 1), RATE),
    "six_channels_96k.wav": lambda p: sf.write(p, noise(12, 96000, channels=6), 96000),
    "eight_bit.wav": lambda p: sf.write(p, sine(12, 22050, 1), 22050, subtype="PCM_U8"),
    "song.ogg": lambda p: sf.write(p, sine(12, 44100, 2), 44100, format="OGG", subtype="VORBIS"),
    "song.mp3": lambda p: sf.write(p, sine(12, 44100, 2), 44100, format="MP3", subtype="MPEG_LAYER_III"),
}


@pytest.mark.parametrize("name", VALID)
def test_valid_odd_files_get_a_critique(checkpoint, tmp_path, capsys, name):
    path = tmp_path / name
    VALID[name](path)
    code, out, err = critique(capsys, path, "--anchor", "vocals", "--model", checkpoint, "--json")
    assert code == 0, err
    report = json.loads(out)
    if name == "silent.wav":
        assert report["windows"] == [] and report["summary"]["verdict"].startswith("nothing to judge")
    else:
        assert report["windows"] and all(w["direction"] in ("increase", "decrease", "none") for w in report["windows"])


@pytest.mark.parametrize("name", INVALID)
def test_invalid_files_are_one_line_naming_the_file(checkpoint, tmp_path, capsys, name):
    make, message = INVALID[name]
    path = tmp_path / name
    make(path)
    code, _, err = critique(capsys, path, "--anchor", "vocals", "--model", checkpoint)
    assert code == 2 and err.count("error:") == 1 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert str(path) in last and message in last


@pytest.mark.parametrize("argv, message", [
    (["--anchor", "piano"], "The anchor must be one of ['bass', 'drums', 'vocals'], got 'piano'"),
    (["--anchor", "vocals", "--stems", "bass,drums"], "Anchor stem 'vocals' is not among the stems present"),
    (["--anchor", "vocals", "--stems", "bass,kazoo"], "Unknown stem name(s) ['kazoo']"),
    (["--anchor", "vocals", "--hop", "12"], "--hop must lie in (0, 10] seconds"),
])
def test_bad_arguments_are_one_line(checkpoint, tmp_path, capsys, argv, message):
    path = tmp_path / "song.wav"
    sf.write(path, noise(12), RATE)
    code, _, err = critique(capsys, path, *argv, "--model", checkpoint)
    assert code == 2 and message in err.strip().splitlines()[-1]


@pytest.mark.slow
def test_the_command_prints_the_verdict(checkpoint, tmp_path):
    path = tmp_path / "song.wav"
    sf.write(path, noise(25), RATE)
    command = [sys.executable, "-m", "mixingbuddy", "critique", str(path), "--anchor", "bass", "--model",
               str(checkpoint), "--hop", "5"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0] == f"{path} (0:25, anchor: bass, stems: bass, drums, other, vocals)"
    assert len([line for line in lines if "–" in line and "dB" in line or "balanced" in line]) >= 4
    assert not any("as the reference" in line for line in lines)  # the shared opening is left out of each window
    assert any(line.startswith("Verdict: ") for line in lines)


# What the model hears beside the mix: the anchor stem's file, or a folder of stem files


@pytest.fixture(scope="module")
def heard_checkpoints(tmp_path_factory):
    """Model folders of tiny random models that hear the mix and the anchor stem, and every stem and the mix."""
    root = tmp_path_factory.mktemp("heard")
    return {setting: save_tiny_checkpoint(root / setting.replace("+", "_"), audio_inputs=setting)
            for setting in ("mix+anchor", "stems")}


def write_multitrack(folder, stems=("bass", "drums", "vocals"), seconds=25, rate=22050):
    """Stem files named after their stems, mono and stereo, and their sum beside them, mix.wav: (mix, {stem: file})."""
    folder.mkdir(parents=True, exist_ok=True)
    files, mix = {}, np.zeros((int(seconds * rate), 2), dtype=np.float32)
    for i, stem in enumerate(stems):
        files[stem] = folder / f"{stem}.wav"
        audio = noise(seconds, rate, channels=1 + i % 2, seed=i)
        sf.write(files[stem], audio, rate, subtype="FLOAT")
        mix += audio
    sf.write(folder / "mix.wav", mix, rate, subtype="FLOAT")
    return folder / "mix.wav", files


def test_a_mix_and_anchor_model_hears_the_anchor_file_beside_each_window(heard_checkpoints, tmp_path, capsys):
    mix, stems = write_multitrack(tmp_path)
    code, out, err = critique(capsys, mix, "--anchor", "vocals", "--model", heard_checkpoints["mix+anchor"],
                              "--anchor-audio", stems["vocals"], "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["audio_inputs"], report["stem_files"]) == ("mix+anchor", {"vocals": str(stems["vocals"])})
    assert report["stems"] == ["bass", "drums", "other", "vocals"]  # --stems, not the files, says which are in the mix
    assert [(w["start"], w["end"]) for w in report["windows"]] == [(0, 10), (10, 20), (15, 25)]
    assert format_critique(report).splitlines()[1] == f"Heard beside the mix (mix+anchor): {stems['vocals']}"


def test_a_stems_model_hears_a_folder_whose_stem_files_say_which_stems_are_in_the_mix(heard_checkpoints, tmp_path,
                                                                                      capsys):
    mix, stems = write_multitrack(tmp_path / "take 3")  # mix.wav lies in the folder too: not a stem, left alone
    (tmp_path / "take 3" / "notes.txt").write_text("no other stem in this song\n")
    code, out, err = critique(capsys, mix, "--anchor", "drums", "--model", heard_checkpoints["stems"], "--stems-dir",
                              tmp_path / "take 3", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["audio_inputs"] == "stems" and report["stems"] == ["bass", "drums", "vocals"]
    assert report["stem_files"] == {stem: str(path) for stem, path in stems.items()}
    assert len(report["windows"]) == 3
    for w in report["windows"]:
        reading = {key: w[key] for key in ("stem", "direction", "min_db", "max_db")}
        assert advice_validity(reading, report["stems"], "drums") == "valid"


def test_each_window_hears_the_same_frames_of_every_file_and_silence_for_a_stem_not_in_the_mix(tmp_path, monkeypatch):
    model, processor = build_tiny_model_and_processor(audio_inputs="stems")
    mix, stems = write_multitrack(tmp_path, seconds=22, rate=16000)
    pausing = sf.read(stems["bass"], dtype="float32")[0]
    pausing[: 10 * 16000] = 0  # the anchor pauses: its windows are judged all the same, the gating is the mix's
    sf.write(stems["bass"], pausing, 16000, subtype="FLOAT")
    heard, prepare = [], type(processor).__call__
    monkeypatch.setattr(type(processor), "__call__",
                        lambda self, **kwargs: heard.extend(kwargs["audio"]) or prepare(self, **kwargs))
    report = critique_audio(open_audio(mix), "bass", model, processor, hop_seconds=6,
                            stem_files=given_stem_files("bass", stems_dir=tmp_path))
    spans = window_spans(22 * 16000, 16000, 10.0, 6)
    assert len(report["windows"]) == len(heard) == len(spans) == 3
    files = {name: sf.read(path, dtype="float32", always_2d=True)[0] for name, path in {"mix": mix, **stems}.items()}
    for clips, (start, stop) in zip(heard, spans):
        assert list(clips) == ["bass", "drums", "other", "vocals", "mix"]  # the order of the model's placeholders
        for name, audio in files.items():
            np.testing.assert_array_equal(clips[name].reshape(stop - start, -1), audio[start:stop])
        assert clips["other"].shape == (stop - start,) and not clips["other"].any()
    with pytest.raises(ValueError, match=r"hears the mix and every stem \(audio_inputs=stems\); add --stems-dir DIR"):
        critique_audio(open_audio(mix), "bass", model, processor)


def audio_file(path, frames=12 * RATE, rate=RATE):
    sf.write(path, noise(frames / rate, rate)[:frames], rate)
    return path


def folder_of(path, *names):
    """A folder holding audio files of these names (12 s at the test rate)."""
    path.mkdir()
    for name in names:
        audio_file(path / name)
    return path


def with_text_file(folder, name):
    """`folder`, with a text file called `name` in it."""
    INVALID["text.wav"][0](folder / name)
    return folder


REFUSALS = {  # name -> (the model's audio_inputs, the flags given a folder to write in, what the one line says)
    "rate": ("mix+anchor", lambda d: ["--anchor-audio", audio_file(d / "vocals 16k.wav", 12 * 16000, 16000)],
             "Stem file {d}/vocals 16k.wav is at 16000 Hz but the mix {d}/mix.wav is at 24000 Hz"),
    "length": ("mix+anchor", lambda d: ["--anchor-audio", audio_file(d / "vocals.wav", 12 * RATE - 1)],
               "Stem file {d}/vocals.wav lasts 287999 frames (12.000 s) but the mix {d}/mix.wav lasts 288000"),
    "mix-model-stems-dir": ("mix", lambda d: ["--stems-dir", folder_of(d / "stems", "vocals.wav")],
                            "this model hears only the mix (audio_inputs=mix); drop --stems-dir."),
    "mix-model-anchor-audio": ("mix", lambda d: ["--anchor-audio", audio_file(d / "vocals.wav")],
                               "this model hears only the mix (audio_inputs=mix); drop --anchor-audio."),
    "no-anchor": ("mix+anchor", lambda d: [], "(audio_inputs=mix+anchor); add --anchor-audio FILE, the vocals stem"),
    "no-stems": ("stems", lambda d: [], "(audio_inputs=stems); add --stems-dir DIR, a folder of the stems"),
    "anchor-audio-to-stems-model": ("stems", lambda d: ["--anchor-audio", audio_file(d / "vocals.wav")],
                                    "add --stems-dir DIR instead of --anchor-audio"),
    "both": ("mix+anchor", lambda d: ["--anchor-audio", audio_file(d / "vocals.wav"), "--stems-dir", d],
             "give the anchor stem either with --anchor-audio or in --stems-dir, not both."),
    "anchor-not-in-folder": ("mix+anchor", lambda d: ["--stems-dir", folder_of(d / "stems", "bass.wav", "drums.wav")],
                             "{d}/stems holds no vocals file (vocals.wav, say): this model hears the anchor stem"),
    "no-stem-files": ("stems", lambda d: ["--stems-dir", folder_of(d / "stems", "mix.wav", "guitar.wav")],
                      "{d}/stems holds no stem file: name each after its stem (bass.wav, drums.wav, other.wav, vocals"),
    "two-files-for-a-stem": ("stems", lambda d: ["--stems-dir", folder_of(d / "stems", "Bass.flac", "bass.wav")],
                             "{d}/stems has two files for the bass stem, Bass.flac and bass.wav; keep one."),
    "missing-folder": ("stems", lambda d: ["--stems-dir", d / "stems"], "--stems-dir {d}/stems does not exist."),
    "stems-differ": ("stems", lambda d: ["--stems-dir", folder_of(d / "stems", "bass.wav", "vocals.wav"), "--stems",
                                         "bass,drums,vocals"],
                     "--stems bass,drums,vocals differs from the stem files in {d}/stems (bass, vocals)"),
    "unreadable-stem": ("stems", lambda d: ["--stems-dir", with_text_file(folder_of(d / "stems", "bass.wav"),
                                                                          "vocals.wav")],
                        "Cannot read {d}/stems/vocals.wav as audio"),
}


@pytest.mark.parametrize("name", REFUSALS)
def test_stem_files_that_do_not_fit_the_model_or_the_mix_are_one_line_naming_them(checkpoint, heard_checkpoints,
                                                                                   tmp_path, capsys, name):
    """Each refused before the model loads, in one line that names the file, the folder or the flag to give."""
    audio_inputs, flags, message = REFUSALS[name]
    audio_file(tmp_path / "mix.wav")
    model = checkpoint if audio_inputs == "mix" else heard_checkpoints[audio_inputs]
    code, _, err = critique(capsys, tmp_path / "mix.wav", "--anchor", "vocals", "--model", model, *flags(tmp_path))
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert message.format(d=tmp_path) in err
