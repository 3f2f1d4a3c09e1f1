"""Export to transformers: AutoModelForCausalLM loads the exported directory with the same logits."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from babygpt import checkpoint
from babygpt.export import export_transformers
from babygpt.lora import LoRAConfig
from babygpt.models import build_model
from babygpt.runs import new_finetune
from babygpt.tokenizer import CharTokenizer
from conftest import randomize_, variant_config


def same_logits(ours, directory, vocab_size, block_size):
    reference = transformers.AutoModelForCausalLM.from_pretrained(directory).eval()
    idx = torch.randint(0, vocab_size, (3, block_size), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, actual = reference(idx).logits, ours.eval()(idx)[0]
    assert expected.abs().max() > 1.0, "logits too small for a sharp comparison"
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
    return reference


def save(model, directory):
    tokenizer = CharTokenizer([chr(ord("a") + i) for i in range(model.config.vocab_size)])
    checkpoint.save_checkpoint(directory, model, tokenizer, {})
    return directory


@pytest.mark.parametrize("name, architecture", [("gpt", "GPT2LMHeadModel"), ("gpt-untied-tanh-nobias", "GPT2LMHeadModel"),
                                                ("llama-gqa", "LlamaForCausalLM"), ("llama-mqa-tied", "LlamaForCausalLM")])
def test_exported_models_give_the_same_logits_in_transformers(name, architecture, tmp_path):
    torch.manual_seed(0)
    model = build_model(variant_config(name))
    randomize_(model, scale=0.3)
    out = export_transformers(save(model, tmp_path / "ckpt"), tmp_path / "hf")
    reference = same_logits(model, out, 20, 16)
    assert type(reference).__name__ == architecture
    assert sorted(p.name for p in out.iterdir()) == ["babygpt_tokenizer.json", "config.json", "model.safetensors"]


def test_the_shipped_models_and_a_merged_adapter_export(tmp_path):
    for name in ("gpt", "llama"):
        model = checkpoint.load_checkpoint(checkpoint.find_checkpoint(name)).model
        same_logits(model, export_transformers(name, tmp_path / name), 62, 64)
    adapter = checkpoint.load_checkpoint(checkpoint.find_checkpoint("gpt-kjv-lora")).model
    same_logits(adapter, export_transformers("gpt-kjv-lora", tmp_path / "kjv"), 62, 64)


def test_an_adapted_head_tied_to_the_embedding_cannot_be_merged_into_one_model(tmp_path):
    trainer = new_finetune("gpt", "kjv", LoRAConfig(r=2, targets=("head",)), {"max_iters": 1, "eval_iters": 1},
                           tmp_path / "adapter", drop_unknown=True)
    for _ in trainer.run():
        pass
    with pytest.raises(ValueError, match="tied to the embedding"):
        export_transformers(tmp_path / "adapter", tmp_path / "hf")
    assert not (tmp_path / "hf").exists(), "nothing half-written"


@pytest.mark.parametrize("name, message", [("gpt-time-weighted", "time_weighting"), ("gpt-low-rank", "attn_rank=4"),
                                           ("gpt-single-head", "feed_forward=False, layer_norm=False"),
                                           ("bigram", "transformers has no bigram model")])
def test_what_transformers_cannot_express_is_refused(name, message, tmp_path):
    out = save(build_model(variant_config(name)), tmp_path / "ckpt")
    with pytest.raises(ValueError, match=message):
        export_transformers(out, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    with pytest.raises(ValueError, match="already exists"):
        export_transformers(out, tmp_path / "ckpt")
