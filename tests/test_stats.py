"""babygpt.stats: parameter breakdown, FLOPs (analytic vs FlopCounterMode), Chinchilla, memory."""

import math

import pytest
import torch

from babygpt.models import PRESETS, build_model, make_config
from babygpt.stats import (
    chinchilla,
    chinchilla_fitted_loss,
    chinchilla_fitted_optimum,
    flops_per_token,
    kv_cache_bytes,
    loss_vs_compute_point,
    matmul_parameters,
    measured_flops_per_token,
    parameter_breakdown,
    pareto_frontier,
    training_memory,
)
from babygpt.trainer import TrainConfig, make_optimizer

from conftest import VARIANTS as FAMILY_VARIANTS
from conftest import variant_config

# A 1-layer gpt small enough to count on paper: V = 5, T = 3, C = 4, 2 heads, biases, tied head.
#
# parameters                         count   of which matmul weights
#   wte  V*C                           20
#   wpe  T*C                           12
#   ln_1 + ln_2 (weight+bias) 2*2C     16
#   c_attn C*3C + 3C                   60     48
#   attn c_proj C*C + C                20     16
#   c_fc C*4C + 4C                     80     64
#   mlp c_proj 4C*C + C                68     64
#   ln_f 2C                             8
#   lm_head (tied to wte)               0     20 (V*C: still a matmul)
#   total                             284    212
#
# FLOPs per token at T = 3: matmul 2*212 = 424; attention 2*2*n_layer*T*d_attn = 4*1*3*4 = 48;
# forward 472; training 3*472 = 1416.
# FlopCounterMode: the same forward; its attention backward recomputes QK^T (2.5x the attention
# forward instead of 2x), so its training count is 3*424 + 3.5*48 = 1440.
#
# Activations saved for backward, bytes per token (fp32), from the model code:
#   block: ln_1 and ln_2 inputs 2*4C = 32, their mean and rstd 2*2*4 = 16, c_attn and c_fc inputs
#          (the LayerNorm outputs) 2*4C = 32, q, k, v 3*4C = 48, attention output 4C = 16,
#          logsumexp 4*n_head = 8, MLP hidden before and after GELU 2*4*4C = 128      -> 280
#   rest:  token ids 8, ln_f input 4C = 16 and stats 8, lm_head input 16,
#          log-probabilities 4V = 20, targets 8                                        ->  76
#   batch 1 x 3 tokens: 3 * (280 + 76) = 1068 bytes.
# Memory: weights and gradients 4 * 284 bytes each, AdamW's two moments 8 * 284.
TINY = {"vocab_size": 5, "block_size": 3, "n_layer": 1, "n_head": 2, "n_embd": 4}


def tiny_gpt():
    return make_config("gpt", **TINY)


def meta_model(config):
    with torch.device("meta"):  # shapes only: even the 10.7M preset builds instantly
        return build_model(config)


def preset_config(name):
    family, settings = PRESETS[name]
    return make_config(family, **settings["model"])


def rows_dict(model):
    return {row["module"]: row["parameters"] for row in parameter_breakdown(model)}


# --- parameters ---------------------------------------------------------------------------------


def test_tiny_gpt_parameter_rows_counted_on_paper():
    model = build_model(tiny_gpt())
    assert model.num_parameters() == 284
    assert rows_dict(model) == {
        "token embedding": 20,
        "position embedding": 12,
        "block 0 attention": 80,
        "block 0 MLP": 148,
        "block 0 norms": 16,
        "final norm": 8,
        "output head (tied to token embedding)": 0,
    }
    assert matmul_parameters(model) == 212
    shares = [row["share"] for row in parameter_breakdown(model)]
    assert math.isclose(sum(shares), 1.0)
    assert shares[0] == pytest.approx(20 / 284)


VARIANTS = {
    **{f"preset {name}": preset_config(name) for name in PRESETS},
    **{f"llama n_kv_head={k}": make_config("llama", n_kv_head=k) for k in (1, 2, 4)},
    "llama tied": make_config("llama", tie_weights=True),
    "gpt time_weighting": make_config("gpt", time_weighting=True),
    "gpt attn_rank": make_config("gpt", attn_rank=8),
    "gpt no layer norm": make_config("gpt", layer_norm=False),
    "gpt no feed_forward": make_config("gpt", feed_forward=False),
    "gpt untied no bias": make_config("gpt", tie_weights=False, bias=False),
    "gpt bare": make_config("gpt", layer_norm=False, feed_forward=False, tie_weights=False),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_rows_sum_to_num_parameters(name):
    model = meta_model(VARIANTS[name])
    rows = parameter_breakdown(model)
    assert sum(row["parameters"] for row in rows) == model.num_parameters()
    assert len({row["module"] for row in rows}) == len(rows)
    assert all(row["parameters"] >= 0 and 0.0 <= row["share"] <= 1.0 for row in rows)


@pytest.mark.parametrize("name", list(FAMILY_VARIANTS))
def test_a_meta_model_counts_what_the_real_one_has_and_leaves_initialisation_alone(name):
    """Counting on the meta device skips the initialisers (they have no values to fill there), only
    for meta tensors and only meanwhile: a model built in another thread at the same time, or
    afterwards, is initialised as always."""
    import threading

    from babygpt import stats
    from babygpt.stats import parameter_count

    config = variant_config(name)
    torch.manual_seed(0)
    expected = build_model(config).state_dict()
    during = {}

    def build_real():
        torch.manual_seed(0)
        during["model"] = build_model(config).state_dict()

    with stats._meta_initialisers_skipped():
        assert torch.nn.init.normal_(torch.zeros(3)).abs().sum() > 0, "a real tensor is still filled"
        worker = threading.Thread(target=build_real)
        worker.start()
        worker.join()
    assert parameter_count(config) == build_model(config).num_parameters()
    for key, tensor in expected.items():
        assert torch.equal(during["model"][key], tensor), key
    assert torch.nn.init.normal_.__module__ == "torch.nn.init", "the initialisers are torch's own again"


def test_row_names_follow_the_options():
    gpt = rows_dict(meta_model(make_config("gpt", n_layer=2, time_weighting=True, tie_weights=False)))
    assert list(gpt)[:6] == [
        "token embedding", "position embedding",
        "block 0 attention", "block 0 time weights", "block 0 MLP", "block 0 norms",
    ]
    assert gpt["block 1 time weights"] == 4 * 64  # n_head * block_size distances
    assert gpt["output head"] == 65 * 128  # untied: counted
    bare = rows_dict(meta_model(make_config("gpt", n_layer=1, layer_norm=False, feed_forward=False)))
    assert set(bare) == {"token embedding", "position embedding", "block 0 attention",
                         "output head (tied to token embedding)"}
    llama = rows_dict(meta_model(make_config("llama", n_layer=1, n_head=4, n_kv_head=1, n_embd=32, vocab_size=10)))
    # q and o are 32x32; k and v project to one head of 8
    assert llama["block 0 attention"] == 2 * 32 * 32 + 2 * 32 * 8
    assert llama["block 0 norms"] == 2 * 32 and llama["final norm"] == 32
    assert llama["output head"] == 10 * 32 and "position embedding" not in llama
    assert rows_dict(meta_model(make_config("bigram", vocab_size=7))) == {"bigram table": 49}
    ngram = rows_dict(meta_model(make_config("ngram", vocab_size=7, n=3, n_embd=2, n_hidden=5)))
    assert ngram == {"token embedding": 8 * 2, "hidden layer": 2 * 2 * 5 + 5, "output head": 5 * 7 + 7}


# --- FLOPs --------------------------------------------------------------------------------------


def test_tiny_gpt_flops_counted_on_paper():
    analytic = flops_per_token(tiny_gpt())
    assert analytic == {
        "context": 3, "matmul_parameters": 212, "matmul": 424, "attention": 48,
        "forward": 472, "backward": 944, "training": 1416,
    }
    measured = measured_flops_per_token(build_model(tiny_gpt()))
    assert (measured["matmul"], measured["attention"], measured["forward"]) == (424, 48, 472)
    assert measured["training"] == 3 * 424 + 3.5 * 48


def test_flops_counted_through_the_opt_in_onednn_linear():
    from babygpt.kernels import ONEDNN_AVAILABLE, use_onednn_linear

    if not ONEDNN_AVAILABLE:
        pytest.skip("oneDNN's inner product is on x86 CPUs only")
    measured = measured_flops_per_token(use_onednn_linear(build_model(tiny_gpt())))  # every no-grad product takes it
    assert (measured["matmul"], measured["attention"], measured["forward"]) == (424, 48, 472)


def test_flops_of_the_other_families():
    bigram = make_config("bigram", vocab_size=9)
    assert flops_per_token(bigram)["training"] == 0  # a lookup: no multiply-adds
    assert measured_flops_per_token(build_model(bigram))["training"] == 0
    ngram = make_config("ngram", vocab_size=9, n=3, n_embd=2, n_hidden=5, block_size=4)
    assert flops_per_token(ngram)["forward"] == 2 * (2 * 2 * 5 + 5 * 9)
    assert measured_flops_per_token(build_model(ngram))["training"] == flops_per_token(ngram)["training"]
    # low rank: the attention term uses attn_rank per head, not n_embd / n_head
    low = make_config("gpt", n_layer=2, n_head=4, attn_rank=8, block_size=16)
    assert flops_per_token(low)["attention"] == 2 * 2 * 2 * 16 * (4 * 8)
    # the attention term grows with the context, the matmul term does not
    gpt = make_config("gpt")
    short, full = flops_per_token(gpt, context=16), flops_per_token(gpt)
    assert short["matmul"] == full["matmul"] and full["attention"] == 4 * short["attention"]
    with pytest.raises(ValueError, match="context"):
        flops_per_token(gpt, context=65)


@pytest.mark.parametrize("preset", ["gpt", "llama"])
def test_analytic_flops_agree_with_flop_counter(preset):
    """At full context: forward exactly equal; training within 5 % (measured: 1.3 %, the recompute
    of QK^T that torch's attention-backward formula counts)."""
    config = preset_config(preset)
    model = build_model(config)
    analytic, measured = flops_per_token(config), measured_flops_per_token(model)
    assert measured["matmul"] == analytic["matmul"]
    assert measured["attention"] == analytic["attention"]
    assert measured["forward"] == analytic["forward"]
    assert measured["training"] == pytest.approx(analytic["training"], rel=0.05)
    assert measured["training"] >= analytic["training"]


def test_measuring_flops_leaves_the_model_alone():
    model = build_model(make_config("gpt", n_layer=1, n_embd=32, block_size=8, dropout=0.1))
    model.eval()
    state = torch.get_rng_state()
    measured_flops_per_token(model, context=4)
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), state)


# --- Chinchilla ---------------------------------------------------------------------------------


def test_chinchilla_rule():
    rule = chinchilla(1_000_000)
    assert rule["optimal_tokens"] == 20_000_000
    assert rule["optimal_flops"] == 6 * 1_000_000 * 20_000_000  # 1.2e14
    budget = chinchilla(1_000_000, budget_flops=1.2e16)
    assert budget["compute_optimal_parameters"] == pytest.approx(1e7)  # sqrt(1.2e16 / 120)
    assert budget["compute_optimal_tokens"] == pytest.approx(2e8)
    assert budget["budget_tokens"] == pytest.approx(2e9)  # 1.2e16 / (6 * 1e6)
    # at the optimal budget of a model, that model is the compute-optimal one
    assert chinchilla(5000, budget_flops=120 * 5000**2)["compute_optimal_parameters"] == pytest.approx(5000)
    with pytest.raises(ValueError):
        chinchilla(0)


@pytest.mark.parametrize("budget", [1e15, 1e18, 5.76e23])
def test_chinchilla_fitted_law_minimises_its_loss_under_the_budget(budget):
    n, d = chinchilla_fitted_optimum(budget)
    assert 6 * n * d == pytest.approx(budget)
    best = chinchilla_fitted_loss(n, d)
    for factor in (0.8, 0.95, 1.05, 1.25):  # any other split of the same compute is worse
        assert chinchilla_fitted_loss(n * factor, budget / (6 * n * factor)) > best
    result = chinchilla(10**6, budget_flops=budget)
    assert (result["fitted_parameters"], result["fitted_tokens"]) == (n, d)


def test_chinchilla_fitted_law_gives_fewer_tokens_per_parameter_at_small_budgets():
    small, large = chinchilla_fitted_optimum(1e15), chinchilla_fitted_optimum(5.76e23)
    assert 12 < small[1] / small[0] < 14 and 90 < large[1] / large[0] < 96


@pytest.mark.parametrize("name", ["gpt", "llama-gqa", "llama-mqa-tied", "bigram"])
def test_kv_cache_bytes_is_what_the_sampler_allocates(name):
    config = variant_config(name)
    model = build_model(config)
    cache = model.new_cache(batch_size=3)
    allocated = 0 if cache is None else sum(t.numel() * t.element_size() for t in (cache.keys, cache.values))
    assert kv_cache_bytes(config, batch_size=3) == allocated
    if name.startswith("llama"):
        sizes = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")
        assert allocated < kv_cache_bytes(make_config("gpt", **{k: getattr(config, k) for k in sizes}), 3)


# --- memory -------------------------------------------------------------------------------------


def saved_activation_bytes(model, batch_size, autocast=False):
    """Bytes autograd keeps for backward, summed over distinct storages, parameters and buffers left
    out: ``torch.autograd.graph.saved_tensors_hooks`` sees every tensor saved in the forward."""
    own = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in own:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    T, V = model.config.block_size, model.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    x, y = (torch.randint(0, V, (batch_size, T), generator=generator) for _ in range(2))
    with (
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
        torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast),
    ):
        model(x, y)
    return sum(saved.values())


def test_tiny_gpt_memory_counted_on_paper():
    memory = training_memory(tiny_gpt(), batch_size=1)
    assert memory["parameters"] == memory["gradients"] == 4 * 284
    assert memory["optimizer"] == 8 * 284
    assert memory["activations"] == 1068
    assert memory["activations_per_block"] == 3 * 280
    assert memory["total"] == 16 * 284 + 1068
    # autograd also keeps the position ids (T int64 = 24 bytes) and the loss's total weight (a
    # 4-byte scalar), which the estimate leaves out as independent of the batch
    assert saved_activation_bytes(build_model(tiny_gpt()), 1) == 1068 + 24 + 4


MEMORY_VARIANTS = {
    "gpt": ("gpt", {}),
    "gpt time_weighting": ("gpt", {"time_weighting": True}),
    "gpt attn_rank": ("gpt", {"attn_rank": 4}),
    "gpt bare": ("gpt", {"layer_norm": False, "feed_forward": False}),
    "gpt dropout": ("gpt", {"dropout": 0.2}),
    "llama gqa": ("llama", {"n_kv_head": 2}),
    "llama mqa dropout": ("llama", {"n_kv_head": 1, "dropout": 0.2}),
    "ngram": ("ngram", {}),
    "bigram": ("bigram", {}),
    # page-aligned sizes: oneDNN rounds each of its workspace arrays up to whole 4 KiB pages
    "lstm": ("lstm", {"n_layer": 2, "n_embd": 64, "n_hidden": 128}),
    "lstm dropout": ("lstm", {"n_layer": 2, "n_embd": 64, "n_hidden": 128, "dropout": 0.2}),
}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("name", MEMORY_VARIANTS)
def test_activation_estimate_matches_saved_tensors(name, dtype):
    family, settings = MEMORY_VARIANTS[name]
    size = {"n_layer": 2, "n_head": 4, "n_embd": 32} if family in ("gpt", "llama") else {}
    config = make_config(family, vocab_size=20, block_size=16, **size, **settings)
    estimate = training_memory(config, batch_size=4, dtype=dtype)["activations"]
    measured = saved_activation_bytes(build_model(config).train(), 4, autocast=dtype == "bfloat16")
    assert estimate == pytest.approx(measured, rel=0.05)


def profiled_peak_bytes(model, batch_size, steps=2):
    """Peak bytes of CPU memory over ``steps`` real training steps (forward, backward, AdamW).

    Measured with ``torch.profiler`` (``profile_memory=True``): every allocation and free the CPU
    allocator makes while profiling is an event; their running sum, in time order, peaks at the
    step's high-water mark. Two steps, so the second runs with AdamW's state already allocated
    as every later step does. The parameters existed before profiling and are added.
    """
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    optimizer = make_optimizer(model, TrainConfig(), torch.device("cpu"))
    T, V = model.config.block_size, model.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    x, y = (torch.randint(0, V, (batch_size, T), generator=generator) for _ in range(2))
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for _ in range(steps):
            _, loss = model(x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation:
            events.append((node.start_time_ns, node.extra_fields.alloc_size))
        stack.extend(node.children)
    running = peak = 0
    for _, size in sorted(events):
        running += size
        peak = max(peak, running)
    return peak + sum(p.numel() * p.element_size() for p in model.parameters())


def test_total_memory_matches_a_real_training_step():
    """The estimated total for the gpt preset at batch 12 against the measured peak of real steps
    (see ``profiled_peak_bytes``: torch.profiler memory events); within 25 % (measured: 0.5 %)."""
    config = preset_config("gpt")
    estimate = training_memory(config, batch_size=12)
    model = build_model(config)
    n = model.num_parameters()
    assert (estimate["parameters"], estimate["gradients"], estimate["optimizer"]) == (4 * n, 4 * n, 8 * n)
    assert estimate["activations"] == pytest.approx(saved_activation_bytes(model, 12), rel=0.02)
    try:
        peak = profiled_peak_bytes(model, 12)
    except (ImportError, AttributeError) as error:  # the profiler's event tree is not public API
        pytest.skip(f"torch.profiler memory events unavailable: {error}")
    assert estimate["total"] == pytest.approx(peak, rel=0.25)


def test_memory_checks_its_arguments():
    config = make_config("gpt")
    with pytest.raises(ValueError, match="dtype"):
        training_memory(config, 1, dtype="float16")
    with pytest.raises(ValueError, match="batch_size"):
        training_memory(config, 0)
    bf16, fp32 = training_memory(config, 8, "bfloat16"), training_memory(config, 8)
    assert bf16["parameters"] == fp32["parameters"] and bf16["activations"] < fp32["activations"]


def test_loss_vs_compute_point_uses_the_tokens_seen_by_the_best_evaluation():
    config = preset_config("gpt")
    metrics = {"history": [{"step": 10, "tokens": 1000, "val_loss": 2.5}, {"step": 20, "tokens": 2000, "val_loss": 2.1},
                           {"step": 30, "tokens": 3000, "val_loss": 2.2}]}
    point = loss_vs_compute_point(config, metrics)
    assert point["val_loss"] == 2.1 and point["flops"] == flops_per_token(config)["training"] * 2000
    n = build_model(config).num_parameters()
    assert point["parameters"] == n and point["optimal_flops"] == 6 * n * 20 * n
    assert loss_vs_compute_point(config, {}) is None
    assert loss_vs_compute_point(make_config("bigram"), metrics) is None  # lookups: no FLOPs to plot on a log axis


def test_pareto_frontier_keeps_only_points_nothing_cheaper_beats():
    points = [(10, 3.0), (1, 4.0), (5, 3.5), (20, 3.2), (100, 2.0), (50, 2.9)]
    assert pareto_frontier(points) == [(1, 4.0), (5, 3.5), (10, 3.0), (50, 2.9), (100, 2.0)]
