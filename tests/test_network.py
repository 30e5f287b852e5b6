"""No network call the user did not ask for: the usage reports of TRL (huggingface_hub's telemetry) and Gradio
(analytics, version check) are off by default, in a process that imports nothing before a guard on its sockets."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import mixingbuddy

REPO = Path(__file__).resolve().parents[1]
# Opt-outs a developer's or a CI's environment may set; without them the test sees what a user's default does (TRL
# also skips its telemetry when CI is set)
OPT_OUTS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "CI", "DO_NOT_TRACK", "DISABLE_TELEMETRY",
            *mixingbuddy.NETWORK_DEFAULTS)
# Run as `python -c GUARD SCRIPT ARGS...`: records and refuses every host lookup and connection beyond this machine,
# then runs SCRIPT as __main__
GUARD = """
import runpy, socket, sys

LOCAL = {"127.0.0.1", "::1", "localhost", "0.0.0.0", None}

def refuse(what):
    print(f"network: {what}", file=sys.stderr, flush=True)
    raise ConnectionRefusedError(f"network call refused by the test: {what}")

def getaddrinfo(host, *args, _real=socket.getaddrinfo, **kwargs):
    if (host.decode() if isinstance(host, bytes) else host) not in LOCAL:
        refuse(f"lookup {host}")
    return _real(host, *args, **kwargs)

def guarded(real):
    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOCAL:
            refuse(f"connect {address}")
        return real(self, address)
    return connect

socket.getaddrinfo = getaddrinfo
socket.socket.connect = guarded(socket.socket.connect)
socket.socket.connect_ex = guarded(socket.socket.connect_ex)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
SERVE_THE_PAGE = """
import sys, urllib.request

import app

page = app.build_app(sys.argv[1])
page.launch(server_name="127.0.0.1", server_port=int(sys.argv[2]), prevent_thread_lock=True)
assert urllib.request.urlopen(page.local_url, timeout=30).status == 200
page.close()
"""


def guarded_run(tmp_path, script: Path, *args: str) -> subprocess.CompletedProcess:
    environ = {name: value for name, value in os.environ.items() if name not in OPT_OUTS}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-c", GUARD, str(script), *args], cwd=tmp_path, env=environ,
                          capture_output=True, text=True, timeout=600)


def network_calls(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("network: ")]


@pytest.mark.slow
def test_training_as_train_sft_does_calls_no_one(tmp_path, synthetic_data):
    stems, dataset, cache = synthetic_data
    done = guarded_run(tmp_path, REPO / "train_sft.py", "--config", str(REPO / "configs" / "tiny.yaml"),
                       "--dataset_name", str(dataset), "--stems_dir", str(stems), "--stem_cache_dir", str(cache),
                       "--output_dir", str(tmp_path / "out"), "--feature_statistics_clips", "16", "--max_steps", "2",
                       "--per_device_train_batch_size", "2", "--eval_strategy", "no", "--save_strategy", "no",
                       "--disable_tqdm", "true")
    assert done.returncode == 0, done.stderr[-3000:]
    assert network_calls(done) == []
    assert (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.slow
def test_serving_the_page_calls_no_one(tmp_path):
    from test_app import free_port  # the page's own tests

    from mixingbuddy.models.tiny import save_tiny_checkpoint

    model = save_tiny_checkpoint(tmp_path / "model")
    script = tmp_path / "serve.py"
    script.write_text(SERVE_THE_PAGE)
    done = guarded_run(tmp_path, script, str(model), str(free_port()))
    assert done.returncode == 0, done.stderr[-3000:]
    assert network_calls(done) == []


def test_the_reports_are_off_unless_the_environment_opts_in():
    environ = {"GRADIO_ANALYTICS_ENABLED": "True"}
    mixingbuddy.network_defaults(environ)
    assert environ == {"GRADIO_ANALYTICS_ENABLED": "True", "HF_HUB_DISABLE_TELEMETRY": "1"}
