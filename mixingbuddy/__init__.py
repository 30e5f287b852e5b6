"""MixingBuddy's tooling: building and loading models, training, evaluation, critique, the demo and the command line.

The model itself is in the repository's Hub files (`configuration_`, `vocabulary_`, `processing_`,
`modeling_mixingbuddy.py`), importable here as `mixingbuddy.hub.<file>`. The main names load on first use, so
`import mixingbuddy` stays cheap:

```python
from mixingbuddy import MixingBuddyForConditionalGeneration, MixingBuddyProcessor, load_model, parse_advice
```

Importing it also turns off, unless the environment already says otherwise, the usage reports the libraries send:
every entry point (the `mixingbuddy` command, `train_sft.py`, `app.py`) imports it before them (`NETWORK_DEFAULTS`).
"""

import importlib
import importlib.resources
import logging
import os
from pathlib import Path

__version__ = "0.1.0"

# bitsandbytes warns when it is imported on a CPU that an optional kernel package is missing: nothing a user can act on
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

# Read when huggingface_hub and gradio are imported or start; `export NAME=...` opts in (HF_HUB_DISABLE_TELEMETRY=0,
# GRADIO_ANALYTICS_ENABLED=True). Downloads and uploads the user asks for (a Hub id, --push-to-hub) are not affected.
NETWORK_DEFAULTS = {
    "HF_HUB_DISABLE_TELEMETRY": "1",  # huggingface_hub's send_telemetry: TRL's trainers ping the Hub when made
    "GRADIO_ANALYTICS_ENABLED": "False",  # Gradio's analytics and its version check on api.gradio.app
}


def network_defaults(environ=os.environ) -> None:
    """Set each of `NETWORK_DEFAULTS` that `environ` does not set: no network call the user did not ask for."""
    for name, value in NETWORK_DEFAULTS.items():
        environ.setdefault(name, value)


network_defaults()

_EXPORTS = {
    "MixingBuddyConfig": "hub.configuration_mixingbuddy",
    "MixingBuddyForConditionalGeneration": "hub.modeling_mixingbuddy",
    "MixingBuddyProcessor": "hub.processing_mixingbuddy",
    "parse_advice": "hub.vocabulary_mixingbuddy",
    "advice_validity": "hub.vocabulary_mixingbuddy",
    "convert": "models.convert",
    "build_tiny_model_and_processor": "models.tiny",
    "save_tiny_checkpoint": "models.tiny",
    "load_model": "models.checkpoints",
    "save_hub_folder": "models.checkpoints",
    "export_model": "models.export",
    "critique_file": "critique",
}

__all__ = ["config_file", "metric_path", *_EXPORTS]


def config_file(name: str) -> Path:
    """A YAML config of the project: `configs/NAME` in a checkout, installed with the package as `mixingbuddy.configs`."""
    return _installed("configs", name, Path.is_file)


def metric_path(name: str = "mixingbuddy_gain") -> str:
    """The folder of one of the project's 🤗 Evaluate modules (`metrics/NAME`, installed as `mixingbuddy.metrics`), for
    `evaluate.load(mixingbuddy.metric_path())` from any folder."""
    return str(_installed("metrics", name, Path.is_dir))


def _installed(folder: str, name: str, exists) -> Path:
    path = Path(str(importlib.resources.files(f"mixingbuddy.{folder}").joinpath(name)))
    if not exists(path):
        raise FileNotFoundError(f"No {name!r} among the project's {folder} ({path.parent}).")
    return path


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
