"""babygpt's Linear: nn.Linear's parameters and results, with oneDNN's kernel when autograd is off."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from babygpt.models import build_model, linear, make_config
from babygpt.models.linear import Linear

pytestmark = pytest.mark.skipif(not linear.USE_ONEDNN, reason="oneDNN's linear is used on x86 CPUs only")


@pytest.fixture(autouse=True)
def any_size(monkeypatch):
    """Let the small test layers take the oneDNN path (it is kept for large weights)."""
    monkeypatch.setattr(linear, "ONEDNN_MIN_WEIGHTS", 0)


def ops_run(fn) -> set[str]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {event.key for event in prof.key_averages()}


@pytest.mark.parametrize("shape", [(5,), (3, 5), (2, 4, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_f_linear_without_autograd(shape, bias):
    torch.manual_seed(0)
    layer = Linear(5, 7, bias=bias)
    x = torch.randn(shape)
    with torch.inference_mode():
        fast = layer(x)
    with torch.no_grad():
        assert torch.allclose(layer(x), fast)
    torch.testing.assert_close(fast, F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-6)
    assert fast.shape == (*shape[:-1], 7)


def test_kernel_choice_follows_autograd_and_dtype():
    layer = Linear(16, 16)
    x = torch.randn(2, 16)
    with torch.no_grad():
        assert "mkldnn::_linear_pointwise" in ops_run(lambda: layer(x))
    assert "mkldnn::_linear_pointwise" not in ops_run(lambda: layer(x))  # training: F.linear, which has a backward
    with torch.no_grad():
        bf16 = Linear(16, 16).to(torch.bfloat16)
        assert "mkldnn::_linear_pointwise" not in ops_run(lambda: bf16(x.to(torch.bfloat16)))


def test_small_weights_keep_f_linear(monkeypatch):
    monkeypatch.setattr(linear, "ONEDNN_MIN_WEIGHTS", 16 * 16 + 1)
    layer, x = Linear(16, 16), torch.randn(2, 16)
    with torch.no_grad():
        assert "mkldnn::_linear_pointwise" not in ops_run(lambda: layer(x))
        assert "mkldnn::_linear_pointwise" in ops_run(lambda: Linear(16, 17)(x))


def test_switch_turns_it_off(monkeypatch):
    layer = Linear(16, 16)
    monkeypatch.setattr(linear, "USE_ONEDNN", False)
    with torch.no_grad():
        assert "mkldnn::_linear_pointwise" not in ops_run(lambda: layer(torch.randn(2, 16)))


def test_training_still_gets_gradients():
    layer = Linear(4, 3)
    layer(torch.randn(2, 4)).sum().backward()
    assert layer.weight.grad is not None and layer.bias.grad is not None


@pytest.mark.parametrize("family", ["ngram", "gpt", "llama"])
def test_every_model_layer_is_one(family):
    model = build_model(make_config(family, vocab_size=11, block_size=8))
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert layers and all(type(m) is Linear for m in layers)


def test_loads_an_nn_linear_state_dict():
    plain = nn.Linear(4, 3)
    layer = Linear(4, 3)
    layer.load_state_dict(plain.state_dict())
    x = torch.randn(2, 4)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), plain(x), rtol=1e-5, atol=1e-6)
