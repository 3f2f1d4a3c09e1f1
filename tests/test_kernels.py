"""babygpt.kernels: the opt-in oneDNN Linear, applied from outside the model files by measuring."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from babygpt.kernels import (
    ONEDNN_AVAILABLE,
    OneDNNLinear,
    column_major,
    fastest_linear,
    use_onednn_linear,
    use_plain_linear,
)
from babygpt.models import build_model, make_config
from babygpt.sampling import token_ids

from conftest import randomize_, variant_config

pytestmark = pytest.mark.skipif(not ONEDNN_AVAILABLE, reason="oneDNN's inner product is on x86 CPUs only")


def ops_run(fn) -> set[str]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {event.key for event in prof.key_averages()}


def onednn(layer: nn.Linear) -> OneDNNLinear:
    return use_onednn_linear(nn.Sequential(layer))[0]


@pytest.mark.parametrize("shape", [(5,), (3, 5), (2, 4, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_f_linear_without_autograd(shape, bias):
    torch.manual_seed(0)
    layer = onednn(nn.Linear(5, 7, bias=bias))
    x = torch.randn(shape)
    with torch.inference_mode():
        fast = layer(x)
    with torch.no_grad():
        assert torch.allclose(layer(x), fast)
    torch.testing.assert_close(fast, F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-6)
    assert fast.shape == (*shape[:-1], 7)


def test_kernel_choice_follows_autograd_and_dtype():
    layer, x = onednn(nn.Linear(16, 16)), torch.randn(2, 16)
    with torch.no_grad():
        assert "mkldnn::_linear_pointwise" in ops_run(lambda: layer(x))
    assert "mkldnn::_linear_pointwise" not in ops_run(lambda: layer(x))  # training: F.linear, which has a backward
    layer(x).sum().backward()
    assert layer.weight.grad is not None and layer.bias.grad is not None
    with torch.no_grad():
        bf16 = onednn(nn.Linear(16, 16).to(torch.bfloat16))
        assert "mkldnn::_linear_pointwise" not in ops_run(lambda: bf16(x.to(torch.bfloat16)))


def test_the_transform_keeps_the_tensors_ties_and_state_dict_and_undoes_itself():
    model = build_model(variant_config("gpt"))
    before = {k: v.data_ptr() for k, v in model.state_dict().items()}
    use_onednn_linear(model)
    assert type(model.lm_head) is OneDNNLinear and model.lm_head.weight is model.transformer.wte.weight
    assert {k: v.data_ptr() for k, v in model.state_dict().items()} == before
    use_plain_linear(model)
    assert all(type(m) is not OneDNNLinear for m in model.modules())
    assert {k: v.data_ptr() for k, v in model.state_dict().items()} == before


@pytest.mark.parametrize("name", ["gpt", "llama-gqa", "ngram"])
def test_generation_on_onednn_is_generation_on_f_linear(name):
    model = build_model(variant_config(name)).eval()
    randomize_(model, scale=0.3)
    plain = list(token_ids(model, [1, 2, 3], 30, temperature=0.0))
    use_onednn_linear(model)
    fast = list(token_ids(model, [1, 2, 3], 30, temperature=0.0))
    assert [t for t, _, _ in fast] == [t for t, _, _ in plain]
    assert max(float((a - b).abs().max()) for (_, a, _), (_, b, _) in zip(fast, plain)) <= 1e-5


def test_fastest_linear_measures_every_shape_here_and_applies_what_won():
    model = build_model(make_config("gpt", vocab_size=65, n_layer=2, n_head=2, n_embd=64, block_size=16))
    report = fastest_linear(model, rounds=3)
    shapes = {tuple(m.weight.shape) for m in model.modules() if isinstance(m, nn.Linear)}
    assert set(report) == shapes
    for row in report.values():
        assert row["plain_us"] > 0 and row["onednn_us"] > 0 and row["column_us"] > 0
        best = min(("onednn", "column"), key=lambda k: row[f"{k}_us"])
        assert row["kernel"] == (best if row[f"{best}_us"] < 0.95 * row["plain_us"] else "plain")
    for module in model.modules():
        if isinstance(module, nn.Linear):
            kernel = report[tuple(module.weight.shape)]["kernel"]
            assert type(module) is (OneDNNLinear if kernel == "onednn" else nn.Linear)
            tied = module is model.lm_head
            assert module.weight.is_contiguous() == (kernel != "column" or tied), "column-major where it won"


def test_column_major_weights_give_the_same_products_and_undo():
    torch.manual_seed(0)
    model = build_model(variant_config("gpt")).eval()
    randomize_(model, scale=0.3)
    plain = [t for t, _, _ in token_ids(model, [1, 2, 3], 30, temperature=0.0)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for layer in (m for m in model.modules() if type(m) is nn.Linear and m is not model.lm_head):
        layer.weight = nn.Parameter(column_major(layer.weight.detach()))
    assert not all(v.is_contiguous() for v in model.state_dict().values())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items()), "the same values"
    assert [t for t, _, _ in token_ids(model, [1, 2, 3], 30, temperature=0.0)] == plain
    use_plain_linear(model)
    assert all(v.is_contiguous() for v in model.state_dict().values())
    assert model.lm_head.weight is model.transformer.wte.weight, "the tied head stays tied"
