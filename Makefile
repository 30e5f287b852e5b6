# Set-up installs into .venv/ at the repository root. The CPU build of torch is pinned here so that a machine
# without a GPU does not download a multi-GB CUDA build; on a GPU machine install the CUDA torch you need first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup soundfont demo test

# The sampled-instrument engine (synth-stems --engine soundfont, the demo's corpus) plays Debian's FluidR3_GM
# SoundFont (MIT licence) through tinysoundfont. apt needs root: without it, this prints the one line to run.
SOUNDFONT := /usr/share/sounds/sf2/FluidR3_GM.sf2
# tinysoundfont is installed without its one declared requirement, pyaudio: that is for live playback (unused here)
# and needs portaudio's headers to build; the wheel itself is self-contained.

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[test]"
	$(BIN)/pip install --quiet --no-deps "tinysoundfont==0.3.7"
	touch $@

soundfont:
	@if [ -f "$(SOUNDFONT)" ] || [ -f "$$MIXINGBUDDY_SOUNDFONT" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian's fluid-soundfont-gm (the General MIDI SoundFont FluidR3_GM, MIT licence)"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fluid-soundfont-gm >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fluid-soundfont-gm >/dev/null; }; \
	else \
		echo "No General MIDI SoundFont: run 'sudo apt-get install fluid-soundfont-gm' or set MIXINGBUDDY_SOUNDFONT=/path/to/GM.sf2"; \
	fi

setup: $(BIN)/.installed soundfont

demo: setup
	$(BIN)/mixingbuddy demo --out demo_out

test: setup
	$(BIN)/python -m pytest -q
