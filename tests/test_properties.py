"""Property-based tests (hypothesis): whatever a visitor sends, the sampler and the app's handlers
either answer or say what is wrong (ValueError in the library, gr.Error in the app): no other
exception, and every call bounded (hypothesis's deadline fails a slow example)."""

import gradio as gr
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from babygpt.models import build_model
from babygpt.sampling import generate
from babygpt.ui import attention_tab, compare_tab, stats_tab
from babygpt.ui.models import load, shipped_checkpoints

from conftest import variant_config

ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1e-300, 1e300])
ANY_INT = st.integers(min_value=-10**12, max_value=10**12) | st.integers(min_value=-3, max_value=70)
BOUNDED = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
MODELS = list(shipped_checkpoints())


@pytest.fixture(scope="module")
def tiny_model():
    return build_model(variant_config("gpt", vocab_size=20, n_layer=1, n_head=2, n_embd=16, block_size=8)).eval()


@BOUNDED
@given(prompt=st.lists(ANY_INT, max_size=12), new=st.integers(-5, 40) | st.sampled_from([10**9]),
       temperature=ANY_FLOAT, top_k=ANY_INT | st.booleans(), top_p=ANY_FLOAT, seed=st.integers(0, 2**63 - 1))
def test_the_sampler_answers_or_says_why(tiny_model, prompt, new, temperature, top_k, top_p, seed):
    try:
        ids = generate(tiny_model, prompt, new, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    except ValueError:
        return
    assert ids[:len(prompt)] == prompt and len(ids) <= len(prompt) + new
    assert all(0 <= i < 20 for i in ids[len(prompt):])


def answers_or_explains(call):
    """Run a handler (draining a generator): it may answer, or raise gr.Error; nothing else."""
    try:
        result = call()
        if hasattr(result, "__next__"):
            for _ in result:
                pass
    except gr.Error:
        pass


TEXT = st.text(max_size=80) | st.sampled_from(["", "Hamlet:\n", "🙂" * 40, "\x00\ud7ff", "a" * 500])


@pytest.fixture(scope="module", autouse=True)
def loaded_models():
    for path in shipped_checkpoints().values():
        load(path)  # the app preloads them too; a first load would not be the handler's time


@BOUNDED
@given(names=st.lists(st.sampled_from(MODELS) | st.text(max_size=10), max_size=7), prompt=TEXT,
       new=st.integers(-5, 60), temperature=ANY_FLOAT, top_k=ANY_INT, top_p=ANY_FLOAT,
       seed=ANY_INT, mode=st.sampled_from(["sampled", "greedy", "dice"]), stop=TEXT,
       colour_by=st.sampled_from(["probability", "entropy", "rainbow"]), merge=st.booleans())
def test_the_compare_handler_answers_or_explains(names, prompt, new, temperature, top_k, top_p, seed, mode, stop,
                                                 colour_by, merge):
    answers_or_explains(lambda: compare_tab.compare(names, prompt, new, temperature, top_k, top_p, seed, mode, stop,
                                                    colour_by, merge, None))


@BOUNDED
@given(name=st.sampled_from(MODELS) | st.text(max_size=10), prompt=TEXT, layer=ANY_INT | ANY_FLOAT,
       head=ANY_INT | ANY_FLOAT)
def test_the_attention_handlers_answer_or_explain(name, prompt, layer, head):
    answers_or_explains(lambda: attention_tab.show(name, prompt, layer, head, None))
    answers_or_explains(lambda: attention_tab.lens(name, prompt, None))


@BOUNDED
@given(name=st.sampled_from(MODELS) | st.none() | st.text(max_size=10), batch=ANY_INT | ANY_FLOAT,
       budget=ANY_INT | ANY_FLOAT)
def test_the_stats_handler_answers_or_explains(name, batch, budget):
    answers_or_explains(lambda: stats_tab.stats(name, None, batch, budget, None))
