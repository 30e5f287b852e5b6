"""Model behaviour on a tiny random MixingBuddy: shapes, token counts, the layer stack, losses, batching, generation."""

import pytest
import torch
import torch.nn.functional as F
from helpers import make_clips, make_prompts
from peft import get_peft_model

from mixingbuddy.hub.configuration_mixingbuddy import MixingBuddyConfig
from mixingbuddy.hub.modeling_mixingbuddy import MixingBuddyForConditionalGeneration
from mixingbuddy.models.tiny import TINY_AUDIO_CONFIG, build_tiny_model_and_processor
from mixingbuddy.training.lora import lora_config, paper_model_args

RESPONSES = [
    "The drums are far too loud. Reduce the drums by 6 to 12 dB.",
    "The mix is well balanced. No gain change is needed.",
    "The bass is a little too quiet. Increase the bass by 3 to 6 dB.",
]


class MixingBuddyModelTester:
    """Builds tiny configs and inputs, in the manner of transformers' model testers."""

    def __init__(self, batch_size=2, audio_pooling=25, aux_loss="norm"):
        self.batch_size = batch_size
        self.model, self.processor = build_tiny_model_and_processor(audio_pooling=audio_pooling, aux_loss=aux_loss)

    def inputs(self, with_responses=False):
        prompts = make_prompts(self.processor)[: self.batch_size]
        return self.processor(
            text=prompts,
            audio=make_clips(len(prompts)),
            sampling_rate=24000,
            responses=RESPONSES[: self.batch_size] if with_responses else None,
        )


def test_output_shapes():
    tester = MixingBuddyModelTester()
    inputs = tester.inputs()
    with torch.no_grad():
        out = tester.model(**inputs)
    config = tester.model.config
    batch, seq = inputs["input_ids"].shape
    assert out.logits.shape == (batch, seq, config.text_config.vocab_size)
    assert out.audio_embeds.shape == (batch, 30, config.text_config.hidden_size)
    assert out.loss is None and out.lm_loss is None


@pytest.mark.parametrize("pooling, expected", [(1, 749), (5, 150), (10, 75)])
def test_audio_token_counts(pooling, expected):
    tester = MixingBuddyModelTester(batch_size=1, audio_pooling=pooling)
    assert tester.model.config.audio_tokens_per_clip == expected
    assert tester.processor.audio_tokens_per_clip == expected
    inputs = tester.inputs()
    assert int((inputs["input_ids"] == tester.model.config.audio_token_id).sum()) == expected
    with torch.no_grad():
        embeds = tester.model.model.get_audio_features(inputs["input_values"])
    assert embeds.shape[1] == expected


def test_paper_config_token_count():
    assert MixingBuddyConfig().audio_tokens_per_clip == 749
    assert MixingBuddyConfig(audio_pooling=10).audio_tokens_per_clip == 75


def test_projector_pools_frames_with_a_partial_last_window():
    from mixingbuddy.hub.modeling_mixingbuddy import MixingBuddyProjector

    pooled = MixingBuddyProjector(MixingBuddyModelTester(audio_pooling=3).model.config).eval()
    unpooled = MixingBuddyProjector(MixingBuddyModelTester(audio_pooling=1).model.config).eval()
    unpooled.load_state_dict(pooled.state_dict())
    frames = torch.randn(2, 7, pooled.blocks[0].linear.in_features)
    means = torch.stack([frames[:, 0:3].mean(1), frames[:, 3:6].mean(1), frames[:, 6:7].mean(1)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(pooled(frames), unpooled(means))


def test_placeholder_mismatch_names_both_counts(tiny, batch):
    model, _ = tiny
    input_ids = batch["input_ids"].clone()
    first_audio = (input_ids[0] == model.config.audio_token_id).nonzero()[0, 0]
    input_ids[0, first_audio] = model.config.text_config.pad_token_id
    with pytest.raises(ValueError, match=r"89 <\|AUDIO\|> tokens but the audio gives 90 embeddings"):
        model(input_ids=input_ids, input_values=batch["input_values"], attention_mask=batch["attention_mask"])


def test_hidden_state_stack_is_mert_25_states():
    """States: embedding output, layers 1..L-1, and layer L after the encoder's final LayerNorm."""
    config = MixingBuddyConfig(
        audio_config={**TINY_AUDIO_CONFIG, "num_hidden_layers": 24, "hidden_size": 16, "intermediate_size": 32},
        text_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
                     "intermediate_size": 32, "vocab_size": 64},
        projector_hidden_sizes=[16],
    )
    model = MixingBuddyForConditionalGeneration(config).eval()
    tower = model.model.audio_tower
    layer_inputs, layer_outputs = [], []
    tower.encoder.layers[0].register_forward_pre_hook(lambda m, args, kw: layer_inputs.append(args[0]), with_kwargs=True)
    for layer in tower.encoder.layers:
        layer.register_forward_hook(lambda m, args, out: layer_outputs.append(out[0] if isinstance(out, tuple) else out))
    audio = torch.randn(1, 24000)
    with torch.no_grad():
        stack = model.model.audio_hidden_state_stack(audio)
        last = tower(audio).last_hidden_state
    assert config.num_audio_states == 25 and stack.shape[0] == 25
    torch.testing.assert_close(stack[0], layer_inputs[0])
    for k in range(1, 24):
        torch.testing.assert_close(stack[k], layer_outputs[k - 1])
    torch.testing.assert_close(stack[24], last)
    torch.testing.assert_close(stack[24], tower.encoder.layer_norm(layer_outputs[23]))


def test_layer_weights_start_uniform_and_mix(tiny):
    model, _ = tiny
    weights = model.model.layer_weights
    states = torch.randn(3, 2, 5, 4)
    torch.testing.assert_close(weights(states), states.mean(0))


def test_trainable_set_is_lora_projector_layer_weights_and_head():
    model, processor = build_tiny_model_and_processor(aux_loss="label")
    peft_model = get_peft_model(model, lora_config(paper_model_args(), model))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all(
        "lora_" in n or any(f"{m}.modules_to_save" in n for m in ("layer_weights", "projector", "advice_head"))
        for n in trainable
    )
    assert not any("audio_tower" in n and "lora_" in n for n in trainable)
    for module in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert any(f"language_model.layers.0.{'self_attn' if module[0] in 'qkvo' else 'mlp'}.{module}.lora_A" in n
                   for n in trainable), module
    inputs = processor(text=make_prompts(processor)[:2], audio=make_clips(2), sampling_rate=24000, responses=RESPONSES[:2])
    peft_model.train()
    out = peft_model(**inputs, advice_labels=torch.tensor([2, 0]))
    out.loss.backward()
    for name, param in peft_model.named_parameters():
        if not param.requires_grad:
            assert param.grad is None, name
    projector_grads = [p.grad for n, p in peft_model.named_parameters() if "projector.modules_to_save" in n]
    assert all(g is not None and g.abs().sum() > 0 for g in projector_grads)
    assert not peft_model.base_model.model.model.audio_tower.training  # frozen tower stays in eval mode


def test_lora_trains_the_clip_level_embedding_in_full():
    model, _ = build_tiny_model_and_processor(audio_inputs="stems", clip_levels=True, aux_loss="label")
    config = lora_config(paper_model_args(), model)
    assert config.modules_to_save == ["layer_weights", "projector", "clip_levels", "advice_head"]
    peft_model = get_peft_model(model, config)
    assert any("clip_levels.modules_to_save" in n for n, p in peft_model.named_parameters() if p.requires_grad)


def test_lm_loss_covers_response_tokens_only():
    tester = MixingBuddyModelTester(aux_loss=None)
    inputs = tester.inputs(with_responses=True)
    with torch.no_grad():
        out = tester.model(**inputs)
    labels = inputs["labels"]
    shift_logits, shift_labels = out.logits[:, :-1], labels[:, 1:]
    keep = shift_labels != -100
    expected = F.cross_entropy(shift_logits[keep], shift_labels[keep])
    torch.testing.assert_close(out.lm_loss, expected)
    assert out.aux_loss is None
    torch.testing.assert_close(out.loss, out.lm_loss)


def test_norm_aux_loss_matches_its_definition():
    tester = MixingBuddyModelTester(aux_loss="norm")
    model, inputs = tester.model, tester.inputs(with_responses=True)
    with torch.no_grad():
        out = model(**inputs)
        embeds = model.get_input_embeddings()(inputs["input_ids"])
    text = (inputs["input_ids"] != model.config.audio_token_id) & inputs["attention_mask"].bool() & (inputs["labels"] == -100)
    target = torch.stack([embeds[i][text[i]].norm(dim=-1).mean() for i in range(len(text))])
    audio = out.audio_embeds.norm(dim=-1).mean(dim=1)
    torch.testing.assert_close(out.aux_loss, ((audio.log() - target.log()) ** 2).mean())
    torch.testing.assert_close(out.loss, out.lm_loss + 0.05 * out.aux_loss)


def test_label_aux_loss_is_cross_entropy_of_the_advice_head():
    tester = MixingBuddyModelTester(aux_loss="label")
    model, inputs = tester.model, tester.inputs(with_responses=True)
    labels = torch.tensor([4, 0])
    with torch.no_grad():
        out = model(**inputs, advice_labels=labels)
        logits = model.advice_head(out.audio_embeds)
    assert logits.shape == (2, 13)
    torch.testing.assert_close(out.aux_loss, F.cross_entropy(logits, labels))
    torch.testing.assert_close(out.loss, out.lm_loss + 0.05 * out.aux_loss)


def test_batch_matches_one_by_one(tiny):
    model, processor = tiny
    prompts, clips = make_prompts(processor), make_clips(3)
    batch = processor(text=prompts, audio=clips, sampling_rate=24000)
    assert (batch["attention_mask"] == 0).any()  # left padding is exercised
    with torch.no_grad():
        batched = model(**batch).logits[:, -1]
        for i in range(3):
            single = processor(text=prompts[i], audio=clips[i], sampling_rate=24000)
            torch.testing.assert_close(batched[i], model(**single).logits[0, -1], atol=1e-4, rtol=1e-4)


def test_greedy_generation_is_deterministic_and_batch_invariant(tiny):
    model, processor = tiny
    assert model.generation_config.do_sample is False
    prompts, clips = make_prompts(processor), make_clips(3)
    batch = processor(text=prompts, audio=clips, sampling_rate=24000)
    n = batch["input_ids"].shape[1]
    first = model.generate(**batch, max_new_tokens=12)[:, n:]
    second = model.generate(**batch, max_new_tokens=12)[:, n:]
    assert torch.equal(first, second)
    for i in range(3):
        single = processor(text=prompts[i], audio=clips[i], sampling_rate=24000)
        alone = model.generate(**single, max_new_tokens=12)[0, single["input_ids"].shape[1]:]
        assert alone.tolist() == first[i, : len(alone)].tolist()


def test_generation_uses_the_kv_cache(tiny, batch):
    model, _ = tiny
    calls = []
    hook = model.register_forward_pre_hook(lambda m, args, kw: calls.append(kw.get("input_ids").shape[1]), with_kwargs=True)
    try:
        model.generate(**batch, max_new_tokens=4, min_new_tokens=4)
    finally:
        hook.remove()
    assert calls[0] == batch["input_ids"].shape[1] and calls[1:] == [1, 1, 1]


def test_projector_dropout_can_be_changed(tiny):
    model, _ = tiny
    model.set_projector_dropout(0.1)
    assert {m.p for m in model.model.projector.modules() if isinstance(m, torch.nn.Dropout)} == {0.1}
    model.set_projector_dropout(model.config.projector_dropout)


def test_log_mel_frontend_standardises_with_stored_statistics_and_counts_tokens():
    model, processor = build_tiny_model_and_processor(audio_frontend="log_mel", freeze_audio_tower=False, audio_pooling=25)
    tower = model.model.audio_tower
    assert model.config.audio_tokens_per_clip == processor.audio_tokens_per_clip == 30  # (240000 - 1024) // 320 + 1 = 747
    audio = torch.randn(2, 240000) * 0.1
    log_mel = tower.log_mel(audio)
    assert log_mel.shape == (2, 747, model.config.num_mel_bins)
    with torch.no_grad():
        tower.feature_mean.copy_(log_mel.mean(dim=(0, 1)))
        tower.feature_std.copy_(log_mel.std(dim=(0, 1)))
        states = tower(audio)
        expected = tower.input_proj((log_mel - tower.feature_mean) / tower.feature_std)
    assert states.shape == (model.config.num_audio_states, 2, 747, model.config.mel_hidden_size)
    torch.testing.assert_close(states[0], expected)
    trainable = {n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad and n.startswith("model.")}
    assert "audio_tower" in trainable  # the light front-end is trained, unlike the frozen MERT


def test_the_weighted_norm_loss_does_not_swamp_the_lm_loss_at_initialisation():
    """Paper shapes (MERT width 1024, the [2048, 4096, 4096, 2048] projector, Qwen2-7B width 3584; one layer each to
    keep it small) at initialisation, text embeddings of norm 1: the audio tokens' norm is about 54, the weighted
    "norm" loss about 0.05 × ln(54)² ≈ 0.8, below a pretrained LM's loss on new text (about 2); the squared difference
    of norms it replaced gave 0.05 × 53² ≈ 140."""
    from mixingbuddy.hub.configuration_mixingbuddy import MixingBuddyConfig

    config = MixingBuddyConfig(
        audio_config={"num_hidden_layers": 1, "intermediate_size": 64},
        text_config={"num_hidden_layers": 1, "intermediate_size": 64, "vocab_size": 64, "num_attention_heads": 28,
                     "num_key_value_heads": 4},
        audio_token_id=5,
    )
    torch.manual_seed(0)
    model = MixingBuddyForConditionalGeneration(config).eval()
    with torch.no_grad():
        embeddings = model.get_input_embeddings().weight
        embeddings.copy_(F.normalize(embeddings, dim=-1))  # text-token norms of 1
        tokens = config.audio_tokens_per_clip
        input_ids = torch.tensor([[1, 2, 3] + [5] * tokens + [4, 6]])
        out = model(input_ids=input_ids, input_values=0.1 * torch.randn(1, config.clip_samples))
    audio_norm = out.audio_embeds.norm(dim=-1).mean().item()
    assert 40 < audio_norm < 70
    assert config.aux_loss_weight * out.aux_loss.item() < 1.0
    assert config.aux_loss_weight * (audio_norm - 1.0) ** 2 > 100  # what a plain squared difference would weigh


def test_the_audio_tower_runs_once_per_generate_call(tiny, batch):
    model, _ = tiny
    calls = []
    handle = model.model.audio_tower.register_forward_hook(lambda *args: calls.append(1))
    try:
        model.generate(**batch, max_new_tokens=6, min_new_tokens=6)
    finally:
        handle.remove()
    assert calls == [1]  # the prompt pass; the decoding steps reuse the KV cache and get no audio
