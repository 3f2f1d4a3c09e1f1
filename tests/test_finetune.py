"""Fine-tuning a trained checkpoint: LoRA adapters saved on their own, loaded onto their base (and
only their base), trained through the trainer with events and exact resume; and full fine-tunes."""

import shutil

import pytest
import torch

from babygpt import checkpoint
from babygpt.data import Dataset, load_text
from babygpt.lora import LoRAConfig, lora_state_dict
from babygpt.runs import new_finetune, new_run, resume_run
from babygpt.sampling import generate
from babygpt.stats import parameter_breakdown
from babygpt.trainer import TrainConfig, Trainer

BASE_MODEL = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16}
BASE_TRAIN = {"batch_size": 8, "max_iters": 30, "eval_interval": 30, "eval_iters": 2, "sample_tokens": 0}
TUNE = {"batch_size": 4, "max_iters": 12, "eval_interval": 4, "eval_iters": 2, "warmup_iters": 2}
NO_HEAD = ("q", "k", "v", "o", "mlp")  # the base ties its head to the embedding: merging refuses "head"


def train_base(out_dir, seed=1337, family_preset="gpt"):
    trainer = new_run("shakespeare", preset=family_preset, model=BASE_MODEL, train={**BASE_TRAIN, "seed": seed},
                      out_dir=out_dir)
    for _ in trainer.run():
        pass
    return out_dir


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("bases")
    return {"gpt": train_base(root / "gpt"), "gpt-other-seed": train_base(root / "other", seed=7),
            "llama": train_base(root / "llama", family_preset="llama")}


def finetune(base, out_dir, lora=LoRAConfig(r=4, targets=NO_HEAD), **train):
    return new_finetune(base, "kjv", lora, {**TUNE, **train}, out_dir, drop_unknown=True)


def run(trainer, stop_at=None):
    events = []
    for event in trainer.run():
        events.append(event)
        if event.kind == "step" and event.step == stop_at:
            trainer.stop()
    return events


def logits(model, seed=0):
    x = torch.randint(0, model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.eval()(x)[0]


def test_adapter_round_trip_onto_its_base(bases, tmp_path):
    base_bytes = (bases["gpt"] / "model.safetensors").read_bytes()
    trainer = finetune(bases["gpt"], tmp_path / "adapter")
    run(trainer)
    files = sorted(p.name for p in (tmp_path / "adapter").iterdir())
    assert "adapter_config.json" in files and "adapter_model.safetensors" in files and "model.safetensors" not in files
    config = checkpoint.read_json(tmp_path / "adapter" / "adapter_config.json")
    assert config["base"] == str(bases["gpt"].resolve())
    assert config["base_sha256"] == checkpoint.file_sha256(bases["gpt"] / "model.safetensors")
    assert config["lora"] == {"r": 4, "alpha": 16.0, "dropout": 0.0, "targets": list(NO_HEAD)}

    loaded = checkpoint.load_checkpoint(tmp_path / "adapter")
    assert loaded.base == bases["gpt"]
    assert torch.equal(logits(loaded.model), logits(trainer.model))
    assert not torch.equal(logits(loaded.model), logits(checkpoint.load_checkpoint(bases["gpt"]).model))
    adapter = lora_state_dict(loaded.model)
    assert adapter.keys() == lora_state_dict(trainer.model).keys()
    size = (tmp_path / "adapter" / "adapter_model.safetensors").stat().st_size
    assert size < 4 * sum(v.numel() for v in adapter.values()) + 10_000  # the adapter only, not the base

    # Training never touched the base: its file and the adapted model's frozen weights are unchanged.
    assert (bases["gpt"] / "model.safetensors").read_bytes() == base_bytes
    base_model = checkpoint.load_checkpoint(bases["gpt"]).model
    frozen = {n.replace(".base.", "."): p for n, p in trainer.model.named_parameters() if not p.requires_grad}
    assert frozen.keys() == dict(base_model.named_parameters()).keys()
    assert all(torch.equal(frozen[n], p) for n, p in base_model.named_parameters())


def test_an_adapter_refuses_a_wrong_base_with_a_clear_message(bases, tmp_path):
    run(finetune(bases["gpt"], tmp_path / "adapter", max_iters=2))
    with pytest.raises(ValueError, match=r"trained on base .* sha256 .*a different model"):
        checkpoint.load_adapter(tmp_path / "adapter", base=bases["gpt-other-seed"])  # same shape, other weights
    with pytest.raises(ValueError, match="adapts a gpt model; .* is a llama model"):
        checkpoint.load_adapter(tmp_path / "adapter", base=bases["llama"])
    with pytest.raises(ValueError, match="not a model checkpoint"):
        checkpoint.load_adapter(tmp_path / "adapter", base=tmp_path / "adapter")
    moved = shutil.copytree(tmp_path / "adapter", tmp_path / "elsewhere" / "adapter")
    config = checkpoint.read_json(moved / "adapter_config.json")
    checkpoint.write_json(moved / "adapter_config.json", {**config, "base": str(tmp_path / "gone")})
    with pytest.raises(ValueError, match="needs its base checkpoint .*gone.*not here"):
        checkpoint.load_checkpoint(moved)
    assert torch.equal(logits(checkpoint.load_adapter(moved, base=bases["gpt"]).model),
                       logits(checkpoint.load_checkpoint(tmp_path / "adapter").model))


def test_a_retrained_base_is_refused(bases, tmp_path):
    base = shutil.copytree(bases["gpt"], tmp_path / "base")
    run(finetune(base, tmp_path / "adapter", max_iters=2))
    checkpoint.load_checkpoint(tmp_path / "adapter")
    trainer = resume_run(base, train={"max_iters": 40, "eval_interval": 5})
    run(trainer)
    with pytest.raises(ValueError, match="a different model"):
        checkpoint.load_checkpoint(tmp_path / "adapter")


def test_lora_stop_and_resume_equals_an_uninterrupted_run(bases, tmp_path):
    lora = LoRAConfig(r=4, dropout=0.2, targets=("q", "v", "mlp"))  # dropout: the RNG must resume too
    uninterrupted = {e.step: e.loss for e in run(finetune(bases["gpt"], tmp_path / "a", lora)) if e.kind == "step"}
    partial = run(finetune(bases["gpt"], tmp_path / "b", lora), stop_at=5)
    assert max(e.step for e in partial) == 5
    resumed = resume_run(tmp_path / "b")
    adapter = lora_state_dict(resumed.model)
    assert resumed.model.num_parameters(trainable_only=True) == sum(v.numel() for v in adapter.values())
    losses = {e.step: e.loss for e in run(resumed) if e.kind == "step"}
    assert min(losses) == 6 and max(losses) == 12
    for step in range(6, 13):
        assert losses[step] == pytest.approx(uninterrupted[step], abs=1e-5), step
    state = checkpoint.read_json(tmp_path / "b" / "training_state.json")
    assert state["step"] == 12
    assert (tmp_path / "b" / "training_state.safetensors").stat().st_size < 200_000  # no base weights in it


def test_events_report_val_loss_on_the_new_and_the_base_corpus_from_step_0(bases, tmp_path):
    trainer = finetune(bases["gpt"], tmp_path / "adapter")
    events = run(trainer)
    evals = [e for e in events if e.kind == "eval"]
    assert [e.step for e in evals] == [0, 4, 8, 12]
    assert all(set(e.other_val_loss) == {"shakespeare"} for e in evals)
    # At step 0 the adapted model is the base (B = 0): its losses are the base's own.
    base = checkpoint.load_checkpoint(bases["gpt"])
    config = TrainConfig.from_dict({**TUNE, "sample_tokens": 0})
    kjv = load_text("kjv")
    kjv = kjv.translate({ord(c): None for c in base.tokenizer.unknown_characters(kjv)})
    on_base = Trainer(base.model, base.tokenizer, Dataset.from_text(kjv, base.tokenizer, 16), config,
                      other_val_sets={"shakespeare": Dataset.from_text(load_text("shakespeare"), base.tokenizer, 16)})
    expected = on_base.estimate_loss()
    assert evals[0].val_loss == pytest.approx(expected["val"], abs=1e-6)
    assert evals[0].other_val_loss["shakespeare"] == pytest.approx(expected["val:shakespeare"], abs=1e-6)
    assert evals[-1].val_loss < evals[0].val_loss  # it learns the new corpus
    metrics = checkpoint.read_json(tmp_path / "adapter" / "metrics.json")
    assert [h["step"] for h in metrics["history"]] == [0, 4, 8, 12]
    assert "shakespeare" in metrics["history"][-1]["other_val_loss"]
    adapter_size = sum(v.numel() for v in lora_state_dict(trainer.model).values())
    assert metrics["trainable_parameters"] == adapter_size < metrics["parameters"]


def test_characters_the_base_cannot_encode_are_refused_unless_dropped(bases, tmp_path):
    with pytest.raises(ValueError, match=r"12 character\(s\) that the model's vocabulary lacks .*'\('.*drop them"):
        new_finetune(bases["gpt"], "kjv", LoRAConfig(), TUNE, tmp_path / "a")
    trainer = finetune(bases["gpt"], tmp_path / "b")
    assert trainer.run_info["dropped_characters"] == sum(load_text("kjv").count(c) for c in "()0123456789")


def test_refusals(bases, tmp_path):
    with pytest.raises(ValueError, match="LoRA adapts the attention families"):
        new_finetune("bigram", "kjv", LoRAConfig(), TUNE, tmp_path / "a", drop_unknown=True)
    with pytest.raises(ValueError, match="is the base checkpoint itself"):
        finetune(bases["gpt"], bases["gpt"])
    run(finetune(bases["gpt"], tmp_path / "adapter", max_iters=1))
    with pytest.raises(ValueError, match="is a LoRA adapter"):
        finetune(tmp_path / "adapter", tmp_path / "b")
    with pytest.raises(ValueError, match="rank r must be a positive"):
        finetune(bases["gpt"], tmp_path / "c", lora=LoRAConfig(r=0))


def test_merged_adapter_matches_unmerged_and_samples_the_same_with_and_without_the_cache(bases, tmp_path):
    run(finetune(bases["gpt"], tmp_path / "adapter", learning_rate=3e-2))
    unmerged = checkpoint.load_adapter(tmp_path / "adapter")
    merged = checkpoint.load_adapter(tmp_path / "adapter", merged=True)
    assert torch.allclose(logits(merged.model), logits(unmerged.model), atol=1e-5, rtol=0)
    prompt = unmerged.tokenizer.encode("And God said")
    cached = generate(unmerged.model, prompt, 40, temperature=1.0, seed=3)
    assert cached == generate(unmerged.model, prompt, 40, temperature=1.0, seed=3, use_cache=False)
    base = checkpoint.load_checkpoint(bases["gpt"]).model
    assert generate(base, prompt, 40, temperature=1.0, seed=3) != cached


def test_full_finetune_trains_every_weight_and_resumes(bases, tmp_path):
    trainer = finetune(bases["gpt"], tmp_path / "full", lora=None, max_iters=6)
    assert trainer.model.num_parameters(trainable_only=True) == trainer.model.num_parameters()
    events = run(trainer)
    assert events[-2].other_val_loss and "shakespeare" in events[-2].other_val_loss
    config = checkpoint.read_config(tmp_path / "full")
    assert config["base"] == str(bases["gpt"].resolve()) and config["drop_unknown"] is True
    resumed = resume_run(tmp_path / "full", train={"max_iters": 8})
    assert resumed.step == 6 and set(resumed.other_val_sets) == {"shakespeare"}
    run(resumed)
    assert checkpoint.load_checkpoint(tmp_path / "full").metrics["steps"] == 8


def test_parameter_breakdown_shows_the_adapters_and_still_sums(bases, tmp_path):
    run(finetune(bases["gpt"], tmp_path / "adapter", max_iters=1))
    model = checkpoint.load_checkpoint(tmp_path / "adapter").model
    rows = parameter_breakdown(model)
    assert rows[-1]["module"] == "LoRA adapters"
    assert rows[-1]["parameters"] == model.num_parameters(trainable_only=True)
    assert sum(r["parameters"] for r in rows) == model.num_parameters()


def test_the_shipped_adapter_loads_onto_the_shipped_gpt_and_learned_its_corpus():
    adapter = checkpoint.shipped_checkpoints()["gpt-kjv-lora"]
    config = checkpoint.read_adapter_config(adapter)
    assert config["base"] == "gpt" and config["corpus"] == "kjv" and config["drop_unknown"] is True
    assert config["lora"]["r"] == 8 and (adapter / "adapter_model.safetensors").stat().st_size < 500_000
    assert not (adapter / "training_state.safetensors").exists(), "shipped for sampling, not resuming"
    loaded = checkpoint.load_checkpoint(adapter)  # fails if checkpoints/gpt was rebuilt without the adapter
    assert loaded.base == checkpoint.shipped_checkpoints()["gpt"]
    history = loaded.metrics["history"]
    assert history[0]["step"] == 0 and loaded.metrics["val_loss"] < history[0]["val_loss"] - 0.1


def test_the_app_lists_an_adapter_whose_base_changed_and_explains_when_it_is_used(bases, tmp_path):
    from babygpt.ui.models import can_be_a_base, has_attention, load

    base = shutil.copytree(bases["gpt"], tmp_path / "base")
    run(finetune(base, tmp_path / "adapter", max_iters=1))
    assert has_attention(tmp_path / "adapter") and not can_be_a_base(tmp_path / "adapter")
    bases = {"base": base}  # the app looks up an adapter's base among the visitor's models
    assert load(tmp_path / "adapter", bases=bases).base == base
    run(resume_run(base, train={"max_iters": 35, "eval_interval": 5}))  # the base is trained further
    assert has_attention(tmp_path / "adapter"), "listing reads the config only"
    with pytest.raises(ValueError, match="a different model"):
        load(tmp_path / "adapter", bases=bases)  # the cache notices the base's new weights
