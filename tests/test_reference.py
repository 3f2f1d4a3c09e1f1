"""Reference equivalence: our gpt is GPT-2 and our llama is LLaMA, weight for weight.

The weights of a randomly initialised babygpt model (made large, so differences show) are copied
into ``transformers``' own implementation of the same shape; the logits must agree within 1e-4.
"""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from babygpt.models import build_model, make_config

from conftest import randomize_


def gpt2_state_dict(model) -> dict:
    """babygpt gpt -> GPT2LMHeadModel names. GPT-2's Conv1D stores weights as (in, out)."""
    conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    return {name: (p.t() if name.endswith(conv1d) else p) for name, p in model.state_dict().items()}


def llama_state_dict(model) -> dict:
    """babygpt llama -> LlamaForCausalLM names: everything but the head lives under 'model.'."""
    return {(name if name.startswith("lm_head") else f"model.{name}"): p for name, p in model.state_dict().items()}


def assert_same_logits(ours, reference, vocab_size=50, block_size=32):
    idx = torch.randint(0, vocab_size, (3, block_size))
    with torch.no_grad():
        expected = reference(idx).logits
        actual, _ = ours(idx)
    assert expected.abs().max() > 1.0, "logits too small for a sharp comparison"
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("activation, hf_activation", [("gelu", "gelu"), ("gelu_tanh", "gelu_pytorch_tanh")])
@pytest.mark.parametrize("bias", [True, False])
def test_gpt_equals_transformers_gpt2(activation, hf_activation, bias):
    torch.manual_seed(0)
    config = make_config("gpt", vocab_size=50, block_size=32, n_layer=3, n_head=4, n_embd=64, activation=activation,
                         bias=bias)
    ours = build_model(config).eval()
    randomize_(ours, scale=0.2)
    reference = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            vocab_size=50, n_positions=32, n_embd=64, n_layer=3, n_head=4, activation_function=hf_activation,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5, tie_word_embeddings=True,
        )
    ).eval()
    state = gpt2_state_dict(ours)
    if not bias:  # GPT-2 always has biases: ours are zero
        for name, p in reference.state_dict().items():
            if name.endswith(".bias") and name not in state:
                state[name] = torch.zeros_like(p)
    missing, unexpected = reference.load_state_dict(state, strict=False)
    assert not unexpected and all("attn.bias" in m or "masked_bias" in m for m in missing), missing
    assert_same_logits(ours, reference)


@pytest.mark.parametrize("n_kv_head", [1, 2, 4])
def test_llama_equals_transformers_llama(n_kv_head):
    torch.manual_seed(0)
    config = make_config("llama", vocab_size=50, block_size=32, n_layer=3, n_head=4, n_kv_head=n_kv_head, n_embd=64)
    ours = build_model(config).eval()
    randomize_(ours, scale=0.2)
    with torch.no_grad():  # norm gains near 1, as in a trained model
        for name, p in ours.named_parameters():
            if "norm" in name:
                p.add_(1.0)
    reference = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            vocab_size=50, hidden_size=64, intermediate_size=config.hidden_size, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=n_kv_head, max_position_embeddings=32, rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, tie_word_embeddings=False,
            attention_bias=False, mlp_bias=False,
        )
    ).eval()
    reference.load_state_dict(llama_state_dict(ours), strict=True)
    assert_same_logits(ours, reference)
