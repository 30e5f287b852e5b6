"""Several clips per prompt (`audio_inputs`: "mix", "mix+anchor", "stems"): the labelled prompt, the processor's clip
forms and errors, the scatter of every clip into its placeholders, the collator's rendering, training, evaluation and
the model folder's fixed setting."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import load_dataset
from helpers import make_clips, write_component_folders
from test_training import run_train_sft

from dataset_builder.augment import augment_clips, augment_mix
from dataset_builder.levels import db_to_gain
from mixingbuddy.evaluation.baselines import log_mel_statistics
from mixingbuddy.evaluation.generation import generate_advice
from mixingbuddy.hub.configuration_mixingbuddy import MixingBuddyConfig
from mixingbuddy.hub.vocabulary_mixingbuddy import STEMS, audio_clips
from mixingbuddy.models.tiny import build_tiny_model_and_processor, save_tiny_checkpoint
from mixingbuddy.training.collator import FlawedMixCollator
from mixingbuddy.training.run import check_model_folder

SETTINGS = ("mix", "mix+anchor", "stems")
LABELS = {
    "mix": [],
    "mix+anchor": ["Mix: ", "Reference (drums): "],
    "stems": ["Reference (drums): ", "Bass: ", "Other: ", "Vocals: ", "Mix: "],
}


@pytest.fixture(scope="module", params=SETTINGS)
def tiny_setting(request):
    """(setting, model, processor): a tiny random model (tiny HuBERT, 30 tokens per clip, the advice head)."""
    model, processor = build_tiny_model_and_processor(seed=0, audio_inputs=request.param, aux_loss="label")
    return request.param, model, processor


def prompts_and_clips(processor, anchors=("drums", "vocals"), seed=0):
    """Prompts of two lengths and, for each, one random clip per placeholder."""
    conversations = [processor.build_conversation(anchor, template=3 * i) for i, anchor in enumerate(anchors)]
    prompts = [processor.apply_chat_template(c, add_generation_prompt=True) for c in conversations]
    n = len(processor.clip_labels("drums") or [None])
    clips = make_clips(n * len(prompts), seed=seed)
    return prompts, [clips[i * n : (i + 1) * n] for i in range(len(prompts))]


def placeholder_runs(input_ids, audio_token_id) -> list[tuple[int, int]]:
    """(start, length) of each run of audio placeholders in one row of token ids."""
    runs, is_audio = [], (input_ids == audio_token_id).tolist()
    for i, audio in enumerate(is_audio):
        if audio and (i == 0 or not is_audio[i - 1]):
            runs.append([i, 0])
        if audio:
            runs[-1][1] += 1
    return [tuple(run) for run in runs]


# ---------------------------------------------------------------------------------------------
# Config and vocabulary
# ---------------------------------------------------------------------------------------------


def test_the_setting_fixes_the_clips_and_their_order():
    assert audio_clips("mix", "vocals") == ["mix"]
    assert audio_clips("mix+anchor", "vocals") == ["mix", "vocals"]
    assert audio_clips("stems", "bass") == ["bass", "drums", "other", "vocals", "mix"]
    config = MixingBuddyConfig(audio_inputs="stems", audio_pooling=1)
    assert (config.num_audio_clips, config.audio_tokens_per_prompt) == (5, 5 * 749)
    assert MixingBuddyConfig().audio_inputs == "mix" and MixingBuddyConfig().num_audio_clips == 1
    with pytest.raises(ValueError, match=r"audio_inputs must be one of \('mix', 'mix\+anchor', 'stems'\).*'anchor'"):
        MixingBuddyConfig(audio_inputs="anchor")


# ---------------------------------------------------------------------------------------------
# Processor
# ---------------------------------------------------------------------------------------------


def test_each_clip_has_a_labelled_placeholder_run_in_order(tiny_setting):
    setting, model, processor = tiny_setting
    prompts, clips = prompts_and_clips(processor)
    user_turn = prompts[0].split("<|im_start|>user\n")[1]
    labels = LABELS[setting]
    clip_list = "".join(f"{label}<|AUDIO|>\n" for label in labels) if labels else "<|AUDIO|>\n"
    assert user_turn.startswith(clip_list + "This mix contains bass, drums, other and vocals. Keep the drums")
    assert processor.clip_names(prompts[0]) == audio_clips(setting, "drums")
    inputs = processor(text=prompts, audio=clips, sampling_rate=24000)
    n, tokens = model.config.num_audio_clips, processor.audio_tokens_per_clip
    assert inputs["input_values"].shape == ((2, 240000) if n == 1 else (2, n, 240000))
    for row, anchor in zip(inputs["input_ids"], ("drums", "vocals")):
        runs = placeholder_runs(row, processor.audio_token_id)
        assert [length for _, length in runs] == [tokens] * n
        text_before = [processor.tokenizer.decode(row[max(0, start - 16) : start]) for start, _ in runs]
        row_labels = [f"{label}: " for label in processor.clip_labels(anchor) or []] or ["<|im_start|>user\n"]
        assert all(text.endswith(label) for text, label in zip(text_before, row_labels, strict=True))


def test_clips_by_name_follow_the_prompts_labels():
    _, processor = build_tiny_model_and_processor(audio_inputs="stems")
    prompts, clips = prompts_and_clips(processor)
    by_list = processor(text=prompts, audio=clips, sampling_rate=24000)
    named = [dict(zip(audio_clips("stems", anchor), row)) for anchor, row in zip(("drums", "vocals"), clips)]
    scrambled = [dict(reversed(list(row.items()))) for row in named]
    scrambled[1]["anchor"] = scrambled[1].pop("vocals")  # the reference may be called "anchor"
    by_name = processor(text=prompts, audio=scrambled, sampling_rate=24000)
    torch.testing.assert_close(by_name["input_values"], by_list["input_values"], rtol=0, atol=0)


def test_one_clip_in_any_form_is_todays_single_clip_call(tiny):
    _, processor = tiny
    prompt = processor.apply_chat_template(processor.build_conversation("vocals"), add_generation_prompt=True)
    (clip,) = make_clips(1)
    expected = processor(text=prompt, audio=clip, sampling_rate=24000)
    for audio in ([clip], [[clip]], {"mix": clip}, [{"mix": clip}]):
        inputs = processor(text=prompt, audio=audio, sampling_rate=24000)
        assert inputs.keys() == expected.keys()
        for key in expected:
            torch.testing.assert_close(inputs[key], expected[key], rtol=0, atol=0)


def test_a_prompts_clips_are_normalised_together():
    """One affine map for a prompt's clips: relative levels survive the normalisation (up to the one shared offset),
    and a silent stem stays silent (a constant, the offset)."""
    _, processor = build_tiny_model_and_processor(audio_inputs="mix+anchor")
    prompt = processor.apply_chat_template(processor.build_conversation("vocals"), add_generation_prompt=True)
    (mix,) = make_clips(1)
    values = processor(text=prompt, audio=[[mix, 0.25 * mix]], sampling_rate=24000)["input_values"][0]
    offset = values[1] - 0.25 * values[0]
    torch.testing.assert_close(offset, offset.mean().expand_as(offset), atol=1e-6, rtol=0)
    assert abs(float(values[0].std()) - np.sqrt(1 / 0.53125)) < 1e-3  # unit variance over both clips together
    silent = processor(text=prompt, audio=[[mix, np.zeros_like(mix)]], sampling_rate=24000)["input_values"][0]
    assert silent[1].std() < 1e-6 and silent[1].abs().max() < 1e-2 and silent[0].std() > 1.4


@pytest.mark.parametrize(
    "audio, rate, message",
    [
        (lambda mix: [[mix]], 24000, "1 audio clip"),  # a wrong number of clips
        (lambda mix: [[mix, mix, mix]], 24000, "2 audio placeholders but 3 audio clip"),
        (lambda mix: [mix, mix], 24000, r"1 prompts but 2 audio clips; .*\(audio=\[\[mix, anchor\], \.\.\.\]\)"),
        (lambda mix: [[mix, mix]], 0, "`sampling_rate` must be a positive number of Hz, got 0"),
        (lambda mix: [[mix, mix[:20000]]], 24000, r"Clip 2 \(vocals\) of prompt 1 is too short: 0.83 s"),
        (lambda mix: [[mix, np.full_like(mix, np.nan)]], 24000, r"Clip 2 \(vocals\) of prompt 1 contains NaN"),
        (lambda mix: [{"mix": mix, "bass": mix}], 24000,
         r"\['bass', 'mix'\], are not the clips the prompt announces, \['mix', 'vocals'\] .* called 'anchor'"),
        (lambda mix: [{"mix": mix, "anchor": mix, "vocals": mix}], 24000, "are not the clips the prompt announces"),
    ],
    ids=["too-few", "too-many", "flat-list", "rate", "short", "nan", "wrong-name", "twice"],
)
def test_bad_clips_raise_a_clear_error(audio, rate, message):
    _, processor = build_tiny_model_and_processor(audio_inputs="mix+anchor")
    prompt = processor.apply_chat_template(processor.build_conversation("vocals"), add_generation_prompt=True)
    with pytest.raises(ValueError, match=message):
        processor(text=prompt, audio=audio(make_clips(1)[0]), sampling_rate=rate)


def test_prompts_of_one_call_need_as_many_clips():
    _, processor = build_tiny_model_and_processor(audio_inputs="mix+anchor")
    two = processor.apply_chat_template(processor.build_conversation("vocals"), add_generation_prompt=True)
    one = processor.apply_chat_template([{"role": "user", "content": [{"type": "audio"}]}], add_generation_prompt=True)
    mix = make_clips(1)[0]
    with pytest.raises(ValueError, match=r"same number of clips; got \[1, 2\]"):
        processor(text=[two, one], audio=[[mix, mix], [mix]], sampling_rate=24000)


def test_the_processor_saves_its_setting(tmp_path):
    from mixingbuddy.hub.processing_mixingbuddy import MixingBuddyProcessor

    _, processor = build_tiny_model_and_processor(audio_inputs="stems")
    processor.save_pretrained(tmp_path)
    assert MixingBuddyProcessor.from_pretrained(tmp_path).audio_inputs == "stems"
    with pytest.raises(ValueError, match="audio_inputs must be one of"):
        MixingBuddyProcessor(processor.feature_extractor, processor.tokenizer, 30, audio_inputs="anchor")


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


def test_every_clip_lands_at_its_own_placeholder_run(tiny_setting):
    setting, model, processor = tiny_setting
    prompts, clips = prompts_and_clips(processor)
    inputs = processor(text=prompts, audio=clips, sampling_rate=24000)
    merged = []
    hook = model.model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: merged.append(kwargs["inputs_embeds"]), with_kwargs=True
    )
    try:
        with torch.no_grad():
            out = model(**inputs)
    finally:
        hook.remove()
    n, tokens = model.config.num_audio_clips, processor.audio_tokens_per_clip
    assert out.audio_embeds.shape == ((2, tokens, 64) if n == 1 else (2, n, tokens, 64))
    for b, row in enumerate(inputs["input_ids"]):
        for k, (start, length) in enumerate(placeholder_runs(row, processor.audio_token_id)):
            expected = out.audio_embeds[b] if n == 1 else out.audio_embeds[b, k]
            torch.testing.assert_close(merged[0][b, start : start + length], expected, rtol=0, atol=0)
    # the clips of a batch, through the tower and projector together, get the tokens each gets alone
    with torch.no_grad():
        for i, clip in enumerate(inputs["input_values"].reshape(-1, 240000)):
            alone = model.model.get_audio_features(clip[None])[0]
            torch.testing.assert_close(alone, out.audio_embeds.reshape(-1, tokens, 64)[i], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("aux_loss", ["label", "norm"])
@pytest.mark.parametrize("setting", SETTINGS)
def test_forward_and_backward_train_every_part(setting, aux_loss):
    model, processor = build_tiny_model_and_processor(audio_inputs=setting, aux_loss=aux_loss)
    prompts, clips = prompts_and_clips(processor)
    inputs = processor(text=prompts, audio=clips, sampling_rate=24000, responses=["The mix is balanced.", "Raise it."])
    model.train()
    out = model(**inputs, advice_labels=torch.tensor([0, 5]))
    out.loss.backward()
    trained = ["model.projector.output.weight", "model.layer_weights.weights"]
    trained += ["advice_head.classifier.weight"] if aux_loss == "label" else []
    grads = dict(model.named_parameters())
    assert all(grads[name].grad is not None and grads[name].grad.abs().sum() > 0 for name in trained)
    if aux_loss == "label":  # per-clip averages side by side
        head = model.advice_head
        assert head.classifier.in_features == model.config.num_audio_clips * 64
        features = out.audio_embeds.reshape(2, -1, processor.audio_tokens_per_clip, 64).mean(2).flatten(1)
        torch.testing.assert_close(out.aux_loss, F.cross_entropy(head.classifier(features), torch.tensor([0, 5])))
    else:  # a prompt's audio tokens together
        embeds = model.get_input_embeddings()(inputs["input_ids"])
        text = (inputs["input_ids"] != model.config.audio_token_id) & (inputs["labels"] == -100)
        text &= inputs["attention_mask"].bool()
        target = torch.stack([embeds[i][text[i]].norm(dim=-1).mean() for i in range(2)])
        audio = out.audio_embeds.reshape(2, -1, 64).norm(dim=-1).mean(1)
        torch.testing.assert_close(out.aux_loss, ((audio.log() - target.log()) ** 2).mean())
    model.zero_grad()


def test_generation_and_beams_keep_each_prompts_clips(tiny_setting):
    """Greedy and beam search: a batch gives each prompt what it gets alone (beams copy a prompt's clips with it)."""
    _, model, processor = tiny_setting
    prompts, clips = prompts_and_clips(processor)
    batch = processor(text=prompts, audio=clips, sampling_rate=24000)
    n = batch["input_ids"].shape[1]
    for kwargs in ({}, {"num_beams": 2}):
        together = model.generate(**batch, max_new_tokens=6, min_new_tokens=6, **kwargs)[:, n:]
        for i in range(2):
            single = processor(text=prompts[i], audio=[clips[i]], sampling_rate=24000)
            alone = model.generate(**single, max_new_tokens=6, min_new_tokens=6, **kwargs)[0, -6:]
            assert alone.tolist() == together[i].tolist()


def test_the_model_refuses_clips_that_do_not_fit():
    model, processor = build_tiny_model_and_processor(audio_inputs="mix+anchor")
    prompts, clips = prompts_and_clips(processor)
    inputs = processor(text=prompts, audio=clips, sampling_rate=24000)
    with pytest.raises(ValueError, match=r"hears 2 clip\(s\) per prompt \(audio_inputs='mix\+anchor'\) but .* holds 1"):
        model(input_ids=inputs["input_ids"], input_values=inputs["input_values"][:, 0])
    with pytest.raises(ValueError, match="audio for 1 prompts but input_ids has 2"):
        model(input_ids=inputs["input_ids"], input_values=inputs["input_values"][:1])
    input_ids = inputs["input_ids"].clone()  # move one placeholder from the second prompt to the first
    input_ids[0, -1] = processor.audio_token_id
    input_ids[1, (input_ids[1] == processor.audio_token_id).nonzero()[0, 0]] = processor.tokenizer.pad_token_id
    with pytest.raises(ValueError, match=r"Prompt 0 has 61 <\|AUDIO\|> tokens but its audio gives 60 .*2 clip\(s\)"):
        model(input_ids=input_ids, input_values=inputs["input_values"])


# ---------------------------------------------------------------------------------------------
# Collator, evaluation, training
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rows(synthetic_data):
    return load_dataset(str(synthetic_data[1]), split="train")


def collator_for(setting, synthetic_data, **kwargs):
    stems, _, cache = synthetic_data
    _, processor = build_tiny_model_and_processor(audio_inputs=setting, audio_frontend="log_mel", audio_pooling=24)
    return FlawedMixCollator(processor, stems, cache_dir=cache, **kwargs)


def flawed_row(rows, category="very_loud"):
    return next(r for r in rows if r["error_category"] == category)


def test_mix_and_anchor_are_the_flawed_mix_and_the_anchor_stem(synthetic_data, rows):
    collator = collator_for("mix+anchor", synthetic_data)
    row = flawed_row(rows)
    mix, anchor = collator.render_clips(row)
    chunk = collator.cache.chunk(row["track"], row["start_sec"], row["end_sec"])  # [stems, samples]
    np.testing.assert_array_equal(mix, collator.cache.render(row))
    np.testing.assert_array_equal(anchor, chunk[STEMS.index(row["anchor_stem"])])
    assert row["anchor_stem"] != row["target_stem"]


def test_stems_add_up_to_the_mix_with_the_gain_on_the_target_only(synthetic_data, rows):
    collator = collator_for("stems", synthetic_data)
    row = {**flawed_row(rows), "stems_present": ["bass", "drums", "vocals"]}  # "other" absent: a silent clip
    names, clips = collator.clip_names(row), collator.render_clips(row)
    assert names == audio_clips("stems", row["anchor_stem"]) and names[0] == row["anchor_stem"]
    chunk = collator.cache.chunk(row["track"], row["start_sec"], row["end_sec"])
    np.testing.assert_allclose(np.sum(clips[:-1], axis=0), clips[-1], atol=1e-6)
    for name, clip in zip(names[:-1], clips):
        gain = db_to_gain(row["gain_db"]) if name == row["target_stem"] else float(name != "other")
        np.testing.assert_allclose(clip, gain * chunk[STEMS.index(name)], rtol=1e-6, atol=1e-7)
    assert not clips[names.index("other")].any()
    batch = collator([row, flawed_row(rows, "quiet")])
    assert batch["input_values"].shape == (2, 5, 240000) and batch["input_values"].isfinite().all()


def test_augmentation_shares_its_gain_and_leaves_the_stems_clean():
    clip = (0.1 * np.random.default_rng(0).standard_normal(48000)).astype(np.float32)
    silent = np.zeros_like(clip)
    stem, mix, muted = augment_clips([0.5 * clip, clip, silent], seed=7, mix_index=1)
    np.testing.assert_array_equal(mix, augment_mix(clip, 7))
    (gain, offset), *_ = np.linalg.lstsq(np.stack([clip, np.ones_like(clip)], 1), mix, rcond=None)
    assert abs(offset) > 0 and not np.allclose(mix, gain * clip + offset, atol=1e-6)  # the mix: offset and noise
    np.testing.assert_allclose(stem, 0.5 * gain * clip, rtol=1e-3, atol=1e-7)  # the same gain, no noise
    assert not muted.any()  # a silent stem stays digital silence


def test_the_collator_augments_an_examples_clips_alike(synthetic_data, rows):
    collator = collator_for("mix+anchor", synthetic_data, augment=True, fresh_gains=True, seed=3)
    plain = collator_for("mix+anchor", synthetic_data)
    for row in (flawed_row(rows), flawed_row(rows, "no_error")):
        mix, anchor = collator.render_clips(row)
        stems = plain.cache.chunk(row["track"], row["start_sec"], row["end_sec"])
        target = stems[STEMS.index(row["target_stem"])]
        # augmented mix = g × (others + fresh gain × target) + offset + noise; augmented anchor = g × anchor
        others = np.stack([stems.sum(0) - target, target, np.ones_like(target)], 1)
        (g, g_times_gain, _), *_ = np.linalg.lstsq(others, mix, rcond=None)
        anchor_stem = stems[STEMS.index(row["anchor_stem"])]
        g_anchor = float(anchor @ anchor_stem / (anchor_stem @ anchor_stem))
        assert (anchor_stem == 0).any() and not anchor[anchor_stem == 0].any()  # clean: its silence stays digital
        assert g_anchor == pytest.approx(g, rel=1e-3) and -3 <= 20 * np.log10(g) <= 3
        assert row["min_gain_db"] - 1e-2 <= 20 * np.log10(g_times_gain / g) <= row["max_gain_db"] + 1e-2


def test_other_spread_moves_the_accompaniment_alone_in_every_clip_and_is_seeded(synthetic_data, rows):
    collator = collator_for("stems", synthetic_data, other_spread_db=6.0, seed=3)
    row = flawed_row(rows)
    names, clips = collator.clip_names(row), collator.render_clips(row)
    chunk = collator.cache.chunk(row["track"], row["start_sec"], row["end_sec"])  # [stems, samples]
    other = chunk[STEMS.index("other")]
    assert other.any()
    other_gain = float(clips[names.index("other")] @ other / (other @ other))
    assert 0.5 <= other_gain <= 2.0 and abs(20 * np.log10(other_gain)) > 1e-3  # within ±6 dB, and moved
    for name, clip in zip(names[:-1], clips):
        gain = db_to_gain(row["gain_db"]) if name == row["target_stem"] else other_gain if name == "other" else 1.0
        np.testing.assert_allclose(clip, gain * chunk[STEMS.index(name)], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.sum(clips[:-1], axis=0), clips[-1], atol=1e-6)  # the mix holds the moved stem
    again = collator_for("stems", synthetic_data, other_spread_db=6.0, seed=3).render_clips(row)
    np.testing.assert_array_equal(again[names.index("other")], clips[names.index("other")])  # the same seed, the same draw
    np.testing.assert_array_equal(collator.eval_copy().render_clips(row)[-1], collator.cache.render(row))
    with pytest.raises(ValueError, match="other_spread_db"):
        collator_for("mix", synthetic_data, other_spread_db=-1)


def test_stem_spread_moves_every_stem_within_its_range_the_flaw_on_top(synthetic_data, rows):
    collator = collator_for("stems", synthetic_data, stem_spread_db=2.0, seed=5)
    row = flawed_row(rows)
    names, clips = collator.clip_names(row), collator.render_clips(row)
    chunk = collator.cache.chunk(row["track"], row["start_sec"], row["end_sec"])  # [stems, samples]
    moves = {}
    for name, clip in zip(names[:-1], clips):
        stem = chunk[STEMS.index(name)]
        scale = float(clip @ stem / (stem @ stem))
        np.testing.assert_allclose(clip, scale * stem, rtol=1e-4, atol=1e-6)  # the stem alone, scaled
        moves[name] = 20 * np.log10(scale / (db_to_gain(row["gain_db"]) if name == row["target_stem"] else 1.0))
    assert all(abs(m) <= 2.0 + 1e-3 for m in moves.values()) and len({round(m, 3) for m in moves.values()}) == 4
    np.testing.assert_allclose(np.sum(clips[:-1], axis=0), clips[-1], atol=1e-6)  # the mix holds the moved stems
    again = collator_for("stems", synthetic_data, stem_spread_db=2.0, seed=5).render_clips(row)
    for clip, same in zip(clips, again):
        np.testing.assert_array_equal(clip, same)  # the same seed, the same draws
    np.testing.assert_array_equal(collator.eval_copy().render_clips(row)[-1], collator.cache.render(row))
    with pytest.raises(ValueError, match="stem_spread_db"):
        collator_for("mix", synthetic_data, stem_spread_db=13)


@pytest.mark.parametrize("setting", SETTINGS)
def test_evaluation_and_the_statistics_baseline_take_every_setting(setting, synthetic_data, rows):
    collator = collator_for(setting, synthetic_data)
    model, _ = build_tiny_model_and_processor(audio_inputs=setting, audio_frontend="log_mel", audio_pooling=24)
    few = [rows[i] for i in (0, 7)]
    for decoding in ("greedy", "constrained", "ranked"):
        answers = generate_advice(model, collator, few, decoding, ranked_chunk_size=64)
        assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    log_mel = model.model.audio_tower.log_mel
    statistics = log_mel_statistics(few, collator, log_mel)
    n, bins = model.config.num_audio_clips, model.config.num_mel_bins
    assert statistics.shape == (2, n * 2 * bins)
    values = collator(few[:1], labels=False)["input_values"].reshape(n, -1)
    frames = log_mel(values[-1:])[0]  # the last clip: the mix in every setting
    torch.testing.assert_close(statistics[0, -2 * bins :], torch.cat([frames.mean(0), frames.std(0)]))


def test_a_tiny_mix_and_anchor_model_trains_end_to_end_and_evaluates(tmp_path, synthetic_data, rows):
    trainer = run_train_sft(synthetic_data, tmp_path / "out", "--audio_inputs", "mix+anchor", "--max_steps", "3",
                            "--per_device_train_batch_size", "4", "--save_strategy", "no", "--logging_steps", "1")
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 3 and all(np.isfinite(entry["loss"]) for entry in logs)
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["audio_inputs"] == "mix+anchor"
    assert json.loads((tmp_path / "out" / "processor_config.json").read_text())["audio_inputs"] == "mix+anchor"
    from mixingbuddy.models.checkpoints import load_model

    model, processor = load_model(str(tmp_path / "out"), device="cpu")
    collator = FlawedMixCollator(processor, synthetic_data[0], cache_dir=synthetic_data[2])
    assert len(generate_advice(model, collator, [rows[0], rows[1]], "ranked")) == 2


def test_a_model_folder_refuses_another_setting(tmp_path):
    folder = save_tiny_checkpoint(tmp_path / "tiny")
    check_model_folder(str(folder), {"audio_inputs": "mix"})
    with pytest.raises(ValueError, match=r"audio_inputs is 'mix' in .*; drop --audio_inputs stems, or convert again "
                                         r"with --audio-inputs stems"):
        check_model_folder(str(folder), {"audio_inputs": "stems"})
    stems = save_tiny_checkpoint(tmp_path / "stems", audio_inputs="stems")
    check_model_folder(str(stems), {"audio_inputs": "stems"})
    with pytest.raises(ValueError, match="audio_inputs is 'stems'"):
        check_model_folder(str(stems), {"audio_inputs": "mix+anchor"})


def test_convert_writes_the_setting_into_the_model_and_processor(tmp_path):
    from transformers import AutoModelForCausalLM, AutoProcessor

    from mixingbuddy.models.convert import convert

    root, _, _ = write_component_folders(tmp_path / "components")
    out = convert(tmp_path / "no-encoder", root / "qwen", tmp_path / "base", audio_frontend="log_mel",
                  audio_pooling=8, aux_loss="label", audio_inputs="mix+anchor")
    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(out, trust_remote_code=True)
    assert model.config.audio_inputs == processor.audio_inputs == "mix+anchor"
    assert model.advice_head.classifier.in_features == 2 * model.config.text_config.hidden_size
    prompts, clips = prompts_and_clips(processor)
    with torch.no_grad():
        assert model(**processor(text=prompts, audio=clips, sampling_rate=24000)).logits.isfinite().all()


# ---------------------------------------------------------------------------------------------
# clip_levels: each clip's level relative to the mix, given to its tokens
# ---------------------------------------------------------------------------------------------


def stems_and_mix(gains_db=(0.0, 0.0, 0.0, 0.0), silent: int | None = None, seed=0) -> list[np.ndarray]:
    """Four noise stems at the given gains (one silent if asked), then their sum: the clips of a "stems" prompt."""
    stems = [clip * np.float32(db_to_gain(g)) for clip, g in zip(make_clips(4, seed=seed), gains_db)]
    if silent is not None:
        stems[silent] = np.zeros_like(stems[silent])
    return [*stems, np.sum(stems, axis=0)]


def test_clip_levels_read_each_clip_against_the_mix_whatever_the_overall_gain():
    model, processor = build_tiny_model_and_processor(audio_inputs="stems", clip_levels=True, aux_loss="label")
    prompts, _ = prompts_and_clips(processor, anchors=("drums",))
    clips = stems_and_mix(gains_db=(6.0, 0.0, -3.0, 0.0), silent=3)
    expected = [10 * np.log10(np.mean(c.astype(np.float64) ** 2) / np.mean(clips[4].astype(np.float64) ** 2))
                for c in clips[:3]]
    for overall in (1.0, 0.05):  # the processor normalises a prompt's clips together: only ratios remain
        values = processor(text=prompts, audio=[[c * overall for c in clips]], sampling_rate=24000)["input_values"]
        levels = model.model.clip_levels.levels(values)[0]
        torch.testing.assert_close(levels[:3], torch.tensor(expected, dtype=torch.float32), atol=0.01, rtol=0)
        assert levels[3] == -60.0 and levels[4] == 0.0  # the silent stem at the floor; the mix is the reference
    assert expected[0] - expected[1] == pytest.approx(6.0, abs=0.2)  # the +6 dB stem reads 6 dB above its neighbour


def test_clip_levels_weigh_frequencies_as_loudness_does():
    """A 40 Hz and a 1 kHz tone at one RMS read as far apart as their integrated loudness (ITU-R BS.1770, pyloudnorm):
    the level is K-weighted, as the corpus levels its stems."""
    import pyloudnorm

    model, _ = build_tiny_model_and_processor(audio_inputs="stems", clip_levels=True, aux_loss="label")
    time = np.arange(10 * 24000) / 24000
    low, high = (0.1 * np.sin(2 * np.pi * f * time) for f in (40.0, 1000.0))
    clips = [low, high, np.zeros_like(low), np.zeros_like(low), low + high]
    levels = model.model.clip_levels.levels(torch.tensor(np.stack(clips), dtype=torch.float32)[None])[0]
    meter = pyloudnorm.Meter(24000)
    expected = meter.integrated_loudness(high) - meter.integrated_loudness(low)  # about 6.2 LU
    assert float(levels[1] - levels[0]) == pytest.approx(expected, abs=0.2) and expected > 5


def test_clip_levels_read_a_stem_while_it_plays():
    """A stem silent for half the clip reads its level where it plays, against the mix over the same frames; the mix
    is the reference (0 dB)."""
    model, processor = build_tiny_model_and_processor(audio_inputs="stems", clip_levels=True, aux_loss="label")
    prompts, _ = prompts_and_clips(processor, anchors=("drums",))
    whole, half = stems_and_mix(), stems_and_mix()
    half[3] = half[3].copy()
    half[3][: len(half[3]) // 2] = 0  # the vocals come in half-way
    half[4] = np.sum(half[:4], axis=0)
    read = [model.model.clip_levels.levels(processor(text=prompts, audio=[clips], sampling_rate=24000)["input_values"])[0]
            for clips in (whole, half)]
    assert read[1][3] == pytest.approx(float(read[0][3]), abs=0.3)  # the whole-clip RMS would read 3 dB lower
    assert read[1][4] == 0.0 and all(-8.0 < float(level) < -4.0 for level in read[1][:4])  # four equal stems: -6 dB


def test_clip_levels_add_one_vector_per_clip_and_train():
    model, processor = build_tiny_model_and_processor(audio_inputs="mix+anchor", clip_levels=True, aux_loss="label")
    prompts, clips = prompts_and_clips(processor)
    inputs = processor(text=prompts, audio=clips, sampling_rate=24000, responses=["The mix is balanced.", "Raise it."])
    values = inputs["input_values"]  # [2 prompts, 2 clips, samples]
    with torch.no_grad():
        with_levels = model.model.get_audio_features(values)  # [2, 2, tokens, 64]
        embedding, model.model.clip_levels = model.model.clip_levels, None
        without = model.model.get_audio_features(values)
        model.model.clip_levels = embedding
    torch.testing.assert_close(with_levels - without, embedding(values)[:, :, None].expand_as(without))
    model.train()
    model(**inputs, advice_labels=torch.tensor([0, 5])).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.model.clip_levels.parameters())


def test_clip_levels_need_several_clips_and_round_trip(tmp_path):
    from transformers import AutoModelForCausalLM

    with pytest.raises(ValueError, match="clip_levels needs several clips"):
        MixingBuddyConfig(clip_levels=True)
    folder = save_tiny_checkpoint(tmp_path / "levels", audio_inputs="stems", clip_levels=True)
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
    assert model.config.clip_levels and model.model.clip_levels.mix_index == 4
    original, _ = build_tiny_model_and_processor(seed=0, audio_inputs="stems", clip_levels=True)
    for name, tensor in original.model.clip_levels.state_dict().items():
        torch.testing.assert_close(model.model.clip_levels.state_dict()[name], tensor)
    # the K-weighting is a buffer not saved with the weights: it is rebuilt on loading, and the levels read the same
    torch.testing.assert_close(model.model.clip_levels.k_weights, original.model.clip_levels.k_weights)
    values = torch.tensor(np.stack(stems_and_mix(gains_db=(3.0, 0.0, -6.0, 0.0))))[None]  # [1, 5 clips, samples]
    torch.testing.assert_close(model.model.clip_levels.levels(values), original.model.clip_levels.levels(values))
    check_model_folder(str(folder), {"clip_levels": True})
    with pytest.raises(ValueError, match="clip_levels is True"):
        check_model_folder(str(folder), {"clip_levels": False})
