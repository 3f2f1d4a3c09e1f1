"""int8 weight quantization with torchao (babygpt/quantize.py)."""

import pytest
import torch

from babygpt.checkpoint import load_checkpoint, shipped_checkpoints
from babygpt.data import Dataset, load_text
from babygpt.lora import LoRAConfig, apply_lora
from babygpt.models import build_model
from babygpt.quantize import quantization_report, quantize_int8, weight_bytes

from conftest import variant_config


@pytest.mark.parametrize("name", ["gpt", "gpt-untied-tanh-nobias", "llama-gqa", "ngram"])
def test_int8_copy_is_close_smaller_and_leaves_the_model_alone(name):
    torch.manual_seed(0)
    model = build_model(variant_config(name)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quantized = quantize_int8(model)
    x = torch.randint(0, 20, (2, 16))
    with torch.no_grad():
        exact, approx = model(x)[0], quantized(x)[0]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the original is untouched"
    assert not torch.equal(exact, approx)  # it really is another model
    assert (approx - exact).abs().max() < 0.05 * exact.abs().max()  # int8 per-row scales keep it close
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    saved = weight_bytes(model) - weight_bytes(quantized)
    rows = sum(m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    # 4 bytes -> 1 per weight, a few bytes of scale per output row; a tied head's embedding stays fp32 beside it
    tied = 4 * model.lm_head.weight.numel() if getattr(model.config, "tie_weights", False) else 0
    assert saved >= 3 * linear - 8 * rows - tied
    with pytest.raises(ValueError, match="already quantized"):
        quantize_int8(quantized)


def test_a_lora_model_quantizes_its_base_and_keeps_its_adapters():
    torch.manual_seed(0)
    model = apply_lora(build_model(variant_config("gpt")), LoRAConfig(r=2, targets=("q", "v"))).eval()
    quantized = quantize_int8(model)
    x = torch.randint(0, 20, (1, 16))
    with torch.no_grad():
        assert torch.allclose(model(x)[0], quantized(x)[0], atol=0.05 * model(x)[0].abs().max().item())


def test_report_on_the_shipped_gpt():
    checkpoint = load_checkpoint(shipped_checkpoints()["gpt"])
    dataset = Dataset.from_text(load_text("shakespeare"), checkpoint.tokenizer, 64)
    fp32, int8 = quantization_report(checkpoint.model, dataset, new_tokens=20, max_windows=32)
    assert fp32["weight_bytes"] == 4 * checkpoint.model.num_parameters()
    assert int8["weight_bytes"] < fp32["weight_bytes"] / 3
    assert abs(int8["val_loss"] - fp32["val_loss"]) < 0.01 and fp32["tokens_per_sec"] > 0 < int8["tokens_per_sec"]
