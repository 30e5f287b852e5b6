"""MixingBuddy model configuration."""

import math
from dataclasses import field

from transformers import HubertConfig, Qwen2Config
from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec

try:  # the package mixingbuddy.hub, or transformers_modules.<folder> for a saved folder
    from .vocabulary_mixingbuddy import AUDIO_INPUTS, AUDIO_TOKEN, mix_clip_index, num_audio_clips
except ImportError:  # a top-level module, from a folder on sys.path: `import configuration_mixingbuddy`
    if __package__:
        raise
    from vocabulary_mixingbuddy import AUDIO_INPUTS, AUDIO_TOKEN, mix_clip_index, num_audio_clips

# MERT-v1-330M: a HuBERT-large layout (stable layer norm, conv front-end with a total stride of 320 samples).
MERT_V1_330M_AUDIO_CONFIG = {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "feat_extract_norm": "group",
    "do_stable_layer_norm": True,
    "conv_bias": False,
    "feat_proj_layer_norm": True,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
}

# Qwen2-7B-Instruct.
QWEN2_7B_TEXT_CONFIG = {
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": False,
}

AUX_LOSS_TYPES = ("norm", "label", None)
AUDIO_FRONTENDS = ("hubert", "log_mel")


def conv_output_frames(num_samples: int, conv_kernel, conv_stride) -> int:
    """Frames the HuBERT convolutional front-end produces for `num_samples` samples (749 for 10 s at 24 kHz)."""
    for kernel, stride in zip(conv_kernel, conv_stride):
        num_samples = (num_samples - kernel) // stride + 1
    return num_samples


def num_audio_tokens(num_samples: int, conv_kernel, conv_stride, audio_pooling: int) -> int:
    """Audio embeddings the model makes for a clip: conv frames, then ceil-divided by the pooling factor."""
    return math.ceil(conv_output_frames(num_samples, conv_kernel, conv_stride) / audio_pooling)


class MixingBuddyConfig(PreTrainedConfig):
    r"""
    Configuration of [`MixingBuddyForConditionalGeneration`]: an audio encoder (HuBERT layout, e.g. MERT-v1-330M),
    a learned softmax mix over its hidden states, optional time pooling, an MLP projector and a Qwen2 language model.
    The defaults describe the paper model (MERT-v1-330M and Qwen2-7B-Instruct shapes).

    Args:
        audio_config (`HubertConfig` or `dict`): the audio encoder.
        text_config (`Qwen2Config` or `dict`): the language model.
        projector_hidden_sizes (`list[int]`): widths of the projector's hidden layers; each layer is
            Linear → activation → LayerNorm → Dropout, then a final Linear to the language model width.
        projector_hidden_act (`str`): activation of the projector.
        projector_dropout (`float`): dropout of the projector (the training schedule moves it from 0.3 to 0.1).
        audio_pooling (`int`): average pooling factor in time; 1 keeps the encoder's 749 frames per 10 s,
            k gives ceil(749 / k) audio tokens.
        audio_inputs (`"mix"`, `"mix+anchor"` or `"stems"`): the clips the model hears per prompt, each at its own
            labelled placeholder, all through the same encoder and projector: the mix (the paper); the mix and the
            anchor stem alone; or every stem, the anchor first, then the mix (see `vocabulary_mixingbuddy.audio_clips`).
        clip_levels (`bool`): with several clips, add to every token of a clip an embedding of the clip's loudness
            (K-weighted power, as ITU-R BS.1770) relative to the mix's while the clip sounds (its quiet frames gated out), in dB (floored at -60): the
            relative levels a balance judgement rests on, given outright instead of left for the tokens to carry
            (`bench/level_oracle.py` measures what they are worth).
        audio_token (`str`), audio_token_id (`int`): the placeholder expanded by the processor.
        aux_loss (`"norm"`, `"label"` or `None`): `"norm"` pulls the mean L2 norm of the audio tokens to the mean norm
            of the prompt's text-token embeddings (the squared log of their ratio); `"label"` trains a head on pooled
            audio tokens to predict the (target stem, category) class (each clip's time-averaged tokens side by side).
        aux_loss_weight (`float`): weight of the auxiliary loss in the total loss.
        num_advice_classes (`int`): classes of the `"label"` head (no_error + 3 stems × 4 flawed categories).
        freeze_audio_tower (`bool`): run the audio encoder frozen and without gradient.
        audio_frontend (`"hubert"` or `"log_mel"`): `"hubert"` is the paper's MERT/HuBERT encoder described by
            `audio_config`; `"log_mel"` is a light CPU front-end (log-mel spectrogram standardised per bin by training-set
            statistics, then `mel_num_layers` convolution blocks of width `mel_hidden_size`) used by the offline demo.
        num_mel_bins, mel_n_fft, mel_hop_length, mel_hidden_size, mel_num_layers: the log-mel front-end.
        sampling_rate (`int`), clip_seconds (`float`): the audio the model expects.
    """

    model_type = "mixingbuddy"
    sub_configs_defaults = {
        "audio_config": SubConfigSpec(config_class=HubertConfig, init_kwargs=MERT_V1_330M_AUDIO_CONFIG),
        "text_config": SubConfigSpec(config_class=Qwen2Config, init_kwargs=QWEN2_7B_TEXT_CONFIG),
    }

    audio_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    projector_hidden_sizes: list[int] = field(default_factory=lambda: [2048, 4096, 4096, 2048])
    projector_hidden_act: str = "gelu"
    projector_dropout: float = 0.3
    audio_pooling: int = 1
    audio_inputs: str = "mix"
    clip_levels: bool = False
    audio_token: str = AUDIO_TOKEN
    audio_token_id: int = 151646
    aux_loss: str | None = "norm"
    aux_loss_weight: float = 0.05
    num_advice_classes: int = 13
    freeze_audio_tower: bool = True
    sampling_rate: int = 24000
    clip_seconds: float = 10.0
    audio_frontend: str = "hubert"
    num_mel_bins: int = 64
    mel_n_fft: int = 1024
    mel_hop_length: int = 320
    mel_hidden_size: int = 128
    mel_num_layers: int = 2

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.aux_loss not in AUX_LOSS_TYPES:
            raise ValueError(f"aux_loss must be one of {AUX_LOSS_TYPES}, got {self.aux_loss!r}.")
        if getattr(self, "auto_map", None) is None:  # a saved folder loads with the Auto classes and pipeline("any-to-any")
            model_class = "modeling_mixingbuddy.MixingBuddyForConditionalGeneration"
            self.auto_map = {
                "AutoConfig": "configuration_mixingbuddy.MixingBuddyConfig",
                "AutoModel": model_class,
                "AutoModelForCausalLM": model_class,
                "AutoModelForMultimodalLM": model_class,  # what pipeline("any-to-any") loads
            }
        if self.audio_frontend not in AUDIO_FRONTENDS:
            raise ValueError(f"audio_frontend must be one of {AUDIO_FRONTENDS}, got {self.audio_frontend!r}.")
        if self.audio_pooling < 1:
            raise ValueError(f"audio_pooling must be >= 1, got {self.audio_pooling}.")
        if self.audio_inputs not in AUDIO_INPUTS:
            raise ValueError(
                f"audio_inputs must be one of {AUDIO_INPUTS} (the mix; the mix and the anchor stem; every stem and "
                f"the mix), got {self.audio_inputs!r}."
            )
        if self.clip_levels and self.num_audio_clips == 1:
            raise ValueError(
                "clip_levels needs several clips (audio_inputs 'mix+anchor' or 'stems'): a mix alone has no level "
                "relative to another clip."
            )

    @property
    def num_audio_states(self) -> int:
        """Hidden states mixed by the layer weights: the embedding output and one per encoder layer."""
        layers = self.mel_num_layers if self.audio_frontend == "log_mel" else self.audio_config.num_hidden_layers
        return layers + 1

    @property
    def audio_hidden_size(self) -> int:
        return self.mel_hidden_size if self.audio_frontend == "log_mel" else self.audio_config.hidden_size

    @property
    def audio_frame_kernel_stride(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(kernels, strides) that turn samples into frames: HuBERT's conv stack, or the log-mel STFT window."""
        if self.audio_frontend == "log_mel":
            return (self.mel_n_fft,), (self.mel_hop_length,)
        return tuple(self.audio_config.conv_kernel), tuple(self.audio_config.conv_stride)

    @property
    def clip_samples(self) -> int:
        return round(self.sampling_rate * self.clip_seconds)

    @property
    def audio_tokens_per_clip(self) -> int:
        """Placeholder tokens a clip expands to (749 at pooling 1 for the paper model)."""
        return num_audio_tokens(self.clip_samples, *self.audio_frame_kernel_stride, self.audio_pooling)

    @property
    def num_audio_clips(self) -> int:
        """Clips per prompt: 1 (`mix`), 2 (`mix+anchor`) or 5 (`stems`)."""
        return num_audio_clips(self.audio_inputs)

    @property
    def mix_clip_index(self) -> int:
        """Where the mix sits among a prompt's clips."""
        return mix_clip_index(self.audio_inputs)

    @property
    def audio_tokens_per_prompt(self) -> int:
        """Placeholder tokens of a prompt's clips together."""
        return self.num_audio_clips * self.audio_tokens_per_clip


MixingBuddyConfig.register_for_auto_class()

__all__ = ["MixingBuddyConfig"]
