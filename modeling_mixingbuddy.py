"""MixingBuddy: an audio encoder, a learned layer mix, an MLP projector and a Qwen2 language model."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, HubertModel, PreTrainedModel, Qwen2Model
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.modeling_outputs import ModelOutput

try:  # the package mixingbuddy.hub, or transformers_modules.<folder> for a saved folder
    from .configuration_mixingbuddy import MixingBuddyConfig
except ImportError:  # a top-level module, from a folder on sys.path: `import modeling_mixingbuddy`
    if __package__:
        raise
    from configuration_mixingbuddy import MixingBuddyConfig


@dataclass
class MixingBuddyModelOutput(ModelOutput):
    """Output of [`MixingBuddyModel`]: the language model's states plus the projected audio tokens."""

    last_hidden_state: torch.FloatTensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    audio_embeds: torch.FloatTensor | None = None
    aux_loss: torch.FloatTensor | None = None


@dataclass
class MixingBuddyCausalLMOutput(ModelOutput):
    """Output of [`MixingBuddyForConditionalGeneration`]; `loss` = `lm_loss` + aux_loss_weight × `aux_loss`."""

    loss: torch.FloatTensor | None = None
    lm_loss: torch.FloatTensor | None = None
    aux_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    audio_embeds: torch.FloatTensor | None = None


class MixingBuddyLayerWeights(nn.Module):
    """Softmax-weighted average of the audio encoder's hidden states (a module, so PEFT can save it)."""

    def __init__(self, num_states: int):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_states))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # hidden_states: [num_states, batch, frames, dim] -> [batch, frames, dim]
        weights = self.weights.softmax(dim=0).to(hidden_states.dtype)
        return torch.einsum("s,sbtd->btd", weights, hidden_states)


class MixingBuddyProjectorBlock(nn.Module):
    """Linear → activation → LayerNorm → Dropout."""

    def __init__(self, in_features: int, out_features: int, act: str, dropout: float):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.act = ACT2FN[act]
        self.norm = nn.LayerNorm(out_features)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.norm(self.act(self.linear(hidden_states))))


class MixingBuddyProjector(nn.Module):
    """Average pooling in time by `audio_pooling`, then the MLP that maps audio frames to language-model tokens."""

    def __init__(self, config: MixingBuddyConfig):
        super().__init__()
        self.pooling = config.audio_pooling
        sizes = [config.audio_hidden_size, *config.projector_hidden_sizes]
        self.blocks = nn.ModuleList(
            MixingBuddyProjectorBlock(i, o, config.projector_hidden_act, config.projector_dropout)
            for i, o in zip(sizes[:-1], sizes[1:])
        )
        self.output = nn.Linear(sizes[-1], config.text_config.hidden_size)

    def forward(self, audio_features: torch.Tensor) -> torch.Tensor:
        # audio_features: [batch, frames, audio_dim] -> [batch, ceil(frames / pooling), text_dim]
        if self.pooling > 1:
            audio_features = F.avg_pool1d(
                audio_features.transpose(1, 2), self.pooling, self.pooling, ceil_mode=True
            ).transpose(1, 2)
        for block in self.blocks:
            audio_features = block(audio_features)
        return self.output(audio_features)


class MixingBuddyAdviceHead(nn.Module):
    """Predicts the (target stem, category) class from the audio tokens (the `"label"` auxiliary loss): a linear layer
    on each clip's time-averaged tokens side by side, in the prompt's fixed clip order. Side by side rather than
    averaged over the clips, so that it can weigh one clip against another (the anchor's level against the mix's); an
    average is the same whichever clip carries what."""

    def __init__(self, config: MixingBuddyConfig):
        super().__init__()
        self.classifier = nn.Linear(config.num_audio_clips * config.text_config.hidden_size, config.num_advice_classes)

    def forward(self, audio_embeds: torch.Tensor) -> torch.Tensor:
        # audio_embeds: [batch, (clips,) tokens, text_dim] -> logits [batch, num_advice_classes]
        return self.classifier(audio_embeds.mean(dim=-2).flatten(1))


def k_weighting_power(sampling_rate: int, n_fft: int) -> torch.Tensor:
    """|H|^2 of ITU-R BS.1770's K-weighting (a +4 dB shelf above ~1.5 kHz, then a high-pass at 38 Hz; the biquads
    designed at `sampling_rate` as pyloudnorm does) at the rfft bins of `n_fft` samples: [n_fft // 2 + 1]."""
    z = torch.exp(-1j * torch.linspace(0, math.pi, n_fft // 2 + 1, dtype=torch.float64))  # z^-1 at each bin
    response = torch.ones_like(z)
    for kind, gain_db, q, cutoff in (("shelf", 4.0, 1 / math.sqrt(2), 1500.0), ("high-pass", 0.0, 0.5, 38.0)):
        w0 = 2 * math.pi * cutoff / sampling_rate
        alpha, cos, amp = math.sin(w0) / (2 * q), math.cos(w0), 10 ** (gain_db / 40)
        if kind == "shelf":
            root = 2 * math.sqrt(amp) * alpha
            b = (amp * (amp + 1 + (amp - 1) * cos + root), -2 * amp * (amp - 1 + (amp + 1) * cos),
                 amp * (amp + 1 + (amp - 1) * cos - root))
            a = (amp + 1 - (amp - 1) * cos + root, 2 * (amp - 1 - (amp + 1) * cos), amp + 1 - (amp - 1) * cos - root)
        else:
            b, a = ((1 + cos) / 2, -(1 + cos), (1 + cos) / 2), (1 + alpha, -2 * cos, 1 - alpha)
        response = response * (b[0] + b[1] * z + b[2] * z**2) / (a[0] + a[1] * z + a[2] * z**2)
    return response.abs().square().float()


class MixingBuddyClipLevelEmbedding(nn.Module):
    """Each clip's loudness relative to its prompt's mix while the clip sounds (dB, within [-60, 20]) -> a vector added
    to every token of the clip: Linear -> GELU -> Linear on the level in units of 20 dB.

    Each frame's power is K-weighted, as ITU-R BS.1770 measures loudness (its spectrum times `k_weighting_power`), so
    a bass and a lead at one loudness read alike, as the synthetic corpus levels them (README "What balanced means").
    The level is gated like EBU R128's relative gate: of the clip's 50 ms frames, those more than `gate_db` under the
    clip's mean power are left out, and the mix is read over the same frames, so a part's rests, or the silence before
    a stem comes in, do not make it read quieter than it is when it plays. The processor normalises a prompt's clips
    together, so the ratios of their energies are those of the audio."""

    def __init__(
        self, config: MixingBuddyConfig, hidden_size: int = 64, frame_seconds: float = 0.05, gate_db: float = 10.0
    ):
        super().__init__()
        self.mix_index = config.mix_clip_index
        self.frame_length = round(config.sampling_rate * frame_seconds)
        self.gate = 10 ** (-gate_db / 10)
        self.sampling_rate = config.sampling_rate
        self.register_buffer("k_weights", k_weighting_power(config.sampling_rate, self.frame_length), persistent=False)
        self.mlp = nn.Sequential(
            nn.Linear(1, hidden_size), nn.GELU(), nn.Linear(hidden_size, config.text_config.hidden_size)
        )

    def levels(self, input_values: torch.Tensor) -> torch.Tensor:
        # input_values: [batch, clips, samples] -> relative levels [batch, clips] in dB
        frames = input_values.shape[-1] // self.frame_length
        frame = input_values[..., : frames * self.frame_length].float().unflatten(-1, (frames, self.frame_length))
        spectrum = torch.fft.rfft(frame)  # [batch, clips, frames, bins]
        # K-weighted power, as loudness is measured: [batch, clips, frames] (re² and im² apart: 1.4x faster than
        # the squared magnitude)
        power = spectrum.real.square() @ self.k_weights + spectrum.imag.square() @ self.k_weights
        active = power >= self.gate * power.mean(-1, keepdim=True)  # [batch, clips, frames]; all of a silent clip
        clip_power = (power * active).sum(-1) + 1e-10  # [batch, clips]
        mix_power = (power[:, self.mix_index, None] * active).sum(-1) + 1e-10  # the mix over each clip's frames
        return (10 * torch.log10(clip_power / mix_power)).clamp(-60.0, 20.0)

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        # input_values: [batch, clips, samples] -> [batch, clips, text_dim]
        return self.mlp(self.levels(input_values).unsqueeze(-1) / 20)


class MixingBuddyConvBlock(nn.Module):
    """Conv1d (kernel 3, same length) → GELU → LayerNorm, with a residual connection."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.conv = nn.Conv1d(hidden_size, hidden_size, kernel_size=3, padding=1)
        self.norm = nn.LayerNorm(hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # hidden_states: [batch, frames, hidden]; GELU runs on the convolution's contiguous output (on the transposed
        # view its backward takes the CPU's strided path, ~1.5x slower for the block)
        return hidden_states + self.norm(F.gelu(self.conv(hidden_states.transpose(1, 2))).transpose(1, 2))


class MixingBuddyLogMelEncoder(nn.Module):
    """A light audio encoder for CPU: log-mel spectrogram standardised per bin by fixed training-set statistics
    (never per clip: per-clip normalisation would erase the level differences the task is about), then conv blocks.

    Frames use an uncentred STFT, so a clip of S samples gives (S - n_fft) // hop + 1 frames.
    """

    def __init__(self, config: MixingBuddyConfig):
        super().__init__()
        self.n_fft, self.hop_length = config.mel_n_fft, config.mel_hop_length
        self.num_mel_bins, self.sampling_rate = config.num_mel_bins, config.sampling_rate
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.register_buffer("mel_filters", mel_filter_bank(config.num_mel_bins, self.n_fft, config.sampling_rate), persistent=False)
        self.register_buffer("feature_mean", torch.zeros(config.num_mel_bins))
        self.register_buffer("feature_std", torch.ones(config.num_mel_bins))
        self.input_proj = nn.Linear(config.num_mel_bins, config.mel_hidden_size)
        self.blocks = nn.ModuleList(MixingBuddyConvBlock(config.mel_hidden_size) for _ in range(config.mel_num_layers))

    def log_mel(self, input_values: torch.Tensor) -> torch.Tensor:
        """Clips [..., samples] -> log-mel [clips, frames, num_mel_bins], one row per clip (not standardised)."""
        clips = input_values.reshape(-1, input_values.shape[-1]).float()  # [clips, samples]
        spec = torch.stft(clips, self.n_fft, self.hop_length, window=self.window, center=False, return_complex=True)
        power = spec.abs().pow(2).transpose(1, 2)  # [clips, frames, n_fft // 2 + 1]
        return torch.log(power @ self.mel_filters.T + 1e-6)

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        """[batch, samples] -> [num_layers + 1, batch, frames, hidden]: the input projection and each block's output."""
        features = (self.log_mel(input_values) - self.feature_mean) / self.feature_std
        states = [self.input_proj(features)]
        for block in self.blocks:
            states.append(block(states[-1]))
        return torch.stack(states)


def mel_filter_bank(num_mel_bins: int, n_fft: int, sampling_rate: int) -> torch.Tensor:
    """Triangular HTK-mel filters [num_mel_bins, n_fft // 2 + 1]."""
    from transformers.audio_utils import mel_filter_bank as hf_mel_filter_bank

    filters = hf_mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1,
        num_mel_filters=num_mel_bins,
        min_frequency=20.0,
        max_frequency=sampling_rate / 2,
        sampling_rate=sampling_rate,
        mel_scale="htk",
    )
    return torch.from_numpy(filters.T).float()


class MixingBuddyPreTrainedModel(PreTrainedModel):
    config_class = MixingBuddyConfig
    base_model_prefix = "model"
    input_modalities = ("audio", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["Qwen2DecoderLayer", "HubertEncoderLayerStableLayerNorm", "HubertEncoderLayer"]
    # Never quantized (bitsandbytes skips these), and in float32 when the rest loads in float16: the frozen encoder
    # (in bfloat16 its features move by 1.1–1.4 %) and the small modules trained in full beside LoRA
    _keep_in_fp32_modules = [
        "model.audio_tower", "model.layer_weights", "model.projector", "model.clip_levels", "advice_head"
    ]
    _skip_keys_device_placement = "cache"
    _supports_sdpa = True
    _supports_flash_attn = True

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)  # Linear, Conv1d, LayerNorm, Embedding and the language model's rotary buffers
        if isinstance(module, MixingBuddyLayerWeights):
            init.zeros_(module.weights)
        elif isinstance(module, MixingBuddyClipLevelEmbedding):
            init.copy_(module.k_weights, k_weighting_power(module.sampling_rate, module.frame_length))
        elif isinstance(module, MixingBuddyLogMelEncoder):
            init.copy_(module.window, torch.hann_window(module.n_fft))
            init.copy_(module.mel_filters, mel_filter_bank(module.num_mel_bins, module.n_fft, module.sampling_rate))
            init.zeros_(module.feature_mean)
            init.ones_(module.feature_std)


class MixingBuddyModel(MixingBuddyPreTrainedModel):
    """The audio path (encoder, layer mix, projector) merged into a Qwen2 decoder, without the LM head."""

    def __init__(self, config: MixingBuddyConfig):
        super().__init__(config)
        if config.audio_frontend == "log_mel":
            self.audio_tower = MixingBuddyLogMelEncoder(config)
        else:
            self.audio_tower = HubertModel(config.audio_config)
        self.layer_weights = MixingBuddyLayerWeights(config.num_audio_states)
        self.projector = MixingBuddyProjector(config)
        self.clip_levels = MixingBuddyClipLevelEmbedding(config) if config.clip_levels else None
        self.language_model = Qwen2Model(config.text_config)
        if config.freeze_audio_tower:
            self.audio_tower.requires_grad_(False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module):
        self.language_model.set_input_embeddings(value)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.config.freeze_audio_tower:
            self.audio_tower.eval()  # a frozen encoder runs without dropout
        return self

    def audio_hidden_state_stack(self, input_values: torch.Tensor) -> torch.Tensor:
        """The 25 states of MERT: the embedding output, layers 1 … L-1, and layer L after the final LayerNorm.

        In transformers 5.x `hidden_states[-1]` is layer L *before* the encoder's final LayerNorm (for the stable-layer-
        norm layout MERT uses), so it is replaced by `last_hidden_state`; for the post-norm layout both are equal.
        """
        # input_values: [batch, samples] -> [num_layers + 1, batch, frames, audio_dim]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_audio_tower):
            if self.config.audio_frontend == "log_mel":
                return self.audio_tower(input_values)
            outputs = self.audio_tower(input_values, output_hidden_states=True, return_dict=True)
        return torch.stack((*outputs.hidden_states[:-1], outputs.last_hidden_state))

    def get_audio_features(self, input_values: torch.Tensor) -> torch.Tensor:
        """Raw 24 kHz clips [..., samples] ([batch, samples] or [batch, clips, samples]) -> audio tokens
        [..., num_audio_tokens, text_dim]. Every clip goes through the tower and projector in one batch of clips; with
        `clip_levels`, each clip's tokens also carry its level relative to the mix."""
        clips = input_values.reshape(-1, input_values.shape[-1])  # [total_clips, samples]
        tower_dtype = next(self.audio_tower.parameters()).dtype
        mixed = self.layer_weights(self.audio_hidden_state_stack(clips.to(tower_dtype)))
        tokens = self.projector(mixed.to(self.projector.output.weight.dtype))  # [total_clips, tokens, text_dim]
        tokens = tokens.reshape(*input_values.shape[:-1], *tokens.shape[1:])
        if self.clip_levels is not None:  # input_values: [batch, clips, samples]
            tokens = tokens + self.clip_levels(input_values).unsqueeze(-2).to(tokens.dtype)
        return tokens

    def check_audio_clips(self, input_ids: torch.LongTensor, input_values: torch.Tensor) -> None:
        """`input_values` holds `config.num_audio_clips` clips for each prompt of `input_ids`."""
        if input_values.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"input_values holds audio for {input_values.shape[0]} prompts but input_ids has {input_ids.shape[0]}: "
                "give [batch, samples] (one clip per prompt) or [batch, clips, samples]."
            )
        clips = input_values.shape[1] if input_values.dim() == 3 else 1
        if clips != self.config.num_audio_clips:
            raise ValueError(
                f"This model hears {self.config.num_audio_clips} clip(s) per prompt (audio_inputs="
                f"{self.config.audio_inputs!r}) but input_values holds {clips}: prepare the inputs with its processor."
            )

    def get_placeholder_mask(self, input_ids: torch.LongTensor, audio_embeds: torch.Tensor) -> torch.Tensor:
        """Positions of the audio placeholder; their count must equal the number of audio embeddings, prompt by prompt
        (`audio_embeds`: [batch, (clips,) tokens, dim]; the clips fill a prompt's placeholders in order)."""
        mask = input_ids == self.config.audio_token_id
        clips, tokens = audio_embeds.shape[:-2].numel(), audio_embeds.shape[-2]
        n_tokens, n_embeds = int(mask.sum()), clips * tokens
        if n_tokens != n_embeds:
            raise ValueError(
                f"Audio placeholder count does not match the audio embeddings: the prompt has {n_tokens} "
                f"{self.config.audio_token} tokens but the audio gives {n_embeds} embeddings "
                f"({clips} clips × {tokens})."
            )
        per_prompt = mask.sum(dim=1)  # [batch]
        expected = n_embeds // input_ids.shape[0]
        if (per_prompt != expected).any():
            i = int((per_prompt != expected).nonzero()[0, 0])
            raise ValueError(
                f"Prompt {i} has {int(per_prompt[i])} {self.config.audio_token} tokens but its audio gives {expected} "
                f"embeddings ({expected // tokens} clip(s) × {tokens}): one placeholder per clip of each prompt."
            )
        return mask

    def norm_aux_loss(
        self, inputs_embeds: torch.Tensor, audio_embeds: torch.Tensor, text_mask: torch.Tensor
    ) -> torch.Tensor:
        """Pull each clip's mean audio-token L2 norm towards the mean norm of its prompt's real text tokens, on a log
        scale: the squared log of their ratio. A plain squared difference would be (54 - 1)² ≈ 2,800 for a paper-sized
        projector at initialisation (token norms ≈ 54) against text embeddings of norm ≈ 1 and swamp the LM loss; the
        log ratio is ln(54)² ≈ 16 there, and it treats a norm twice as large and one half as large alike."""
        # inputs_embeds: [batch, seq, dim] (before the merge), text_mask: [batch, seq],
        # audio_embeds: [batch, (clips,) tokens, dim] (a prompt's clips together)
        text_norms = inputs_embeds.detach().float().norm(dim=-1)
        target = (text_norms * text_mask).sum(1) / text_mask.sum(1).clamp(min=1)
        audio_norm = audio_embeds.float().norm(dim=-1).flatten(1).mean(dim=1)
        return F.mse_loss(audio_norm.clamp(min=1e-6).log(), target.clamp(min=1e-6).log())

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        input_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> MixingBuddyModelOutput:
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)

        audio_embeds = aux_loss = None
        if input_values is not None and input_ids is not None:
            self.check_audio_clips(input_ids, input_values)
            audio_embeds = self.get_audio_features(input_values)  # [batch, (clips,) tokens, text_dim]
            audio_mask = self.get_placeholder_mask(input_ids, audio_embeds)
            if self.config.aux_loss == "norm":
                text_mask = ~audio_mask
                if attention_mask is not None:
                    text_mask &= attention_mask.bool()
                if labels is not None:
                    text_mask &= labels == -100  # the prompt only, not the response
                aux_loss = self.norm_aux_loss(inputs_embeds, audio_embeds, text_mask)
            inputs_embeds = inputs_embeds.masked_scatter(
                audio_mask.unsqueeze(-1), audio_embeds.to(inputs_embeds.device, inputs_embeds.dtype)
            )

        outputs = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
            **kwargs,
        )
        return MixingBuddyModelOutput(
            last_hidden_state=outputs.last_hidden_state,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            audio_embeds=audio_embeds,
            aux_loss=aux_loss,
        )


class MixingBuddyForConditionalGeneration(MixingBuddyPreTrainedModel, GenerationMixin):
    """MixingBuddy with a language-modelling head: listens to a mix and writes gain-balance advice."""

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}

    def __init__(self, config: MixingBuddyConfig):
        super().__init__(config)
        self.model = MixingBuddyModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.advice_head = MixingBuddyAdviceHead(config) if config.aux_loss == "label" else None
        self.post_init()
        self.generation_config.do_sample = False
        self.generation_config.max_new_tokens = 64

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Module):
        self.lm_head = value

    def total_loss(self, lm_loss: torch.Tensor, aux_loss: torch.Tensor | None) -> torch.Tensor:
        """`lm_loss` + `aux_loss_weight` × `aux_loss` (the LM loss alone without an auxiliary loss)."""
        return lm_loss if aux_loss is None else lm_loss + self.config.aux_loss_weight * aux_loss

    def set_projector_dropout(self, p: float):
        """Change the projector's dropout probability (used by the training schedule)."""
        for module in self.model.projector.modules():
            if isinstance(module, nn.Dropout):
                module.p = p

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        input_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        advice_labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> MixingBuddyCausalLMOutput:
        r"""
        input_values (`torch.FloatTensor` of shape `(batch_size, [num_clips,] num_samples)`):
            Mono audio at `config.sampling_rate`: fixed-length clips, `config.num_audio_clips` per prompt, in the order
            of the prompt's placeholders (see [`MixingBuddyProcessor`]).
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
            Response token ids; prompt, audio and padding positions are -100.
        advice_labels (`torch.LongTensor` of shape `(batch_size,)`):
            (target stem, category) class per clip, for the `"label"` auxiliary loss.
        """
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        outputs = self.model(
            input_ids=input_ids,
            input_values=input_values,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            labels=labels,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        slice_indices = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden_states[:, slice_indices, :])

        aux_loss = outputs.aux_loss
        if self.advice_head is not None and advice_labels is not None and outputs.audio_embeds is not None:
            aux_loss = F.cross_entropy(self.advice_head(outputs.audio_embeds).float(), advice_labels)

        lm_loss = loss = None
        if labels is not None:
            lm_loss = self.loss_function(
                logits=logits,
                labels=labels,
                vocab_size=self.config.text_config.vocab_size,
                num_items_in_batch=num_items_in_batch,
            )
            loss = self.total_loss(lm_loss, aux_loss)

        return MixingBuddyCausalLMOutput(
            loss=loss,
            lm_loss=lm_loss,
            aux_loss=aux_loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            audio_embeds=outputs.audio_embeds,
        )


MixingBuddyForConditionalGeneration.register_for_auto_class("AutoModelForCausalLM")

__all__ = ["MixingBuddyForConditionalGeneration", "MixingBuddyModel", "MixingBuddyPreTrainedModel"]
