"""Start here: a first visit in six steps. Each step says what there is to see, with the shipped
models' own numbers (``babygpt.tour``), and its button opens the tab that shows it with the form
filled in: a visitor's own model once they have trained one, a shipped one before."""

from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr

from .. import tour
from ..checkpoint import SHIPPED_DIR, has_attention_snapshots, read_json, shipped_checkpoints
from ..models import make_config
from ..runs import DEFAULT_PRESET, resolve_settings
from ..stats import parameter_count
from ..tokenizer import builtin_character_count
from .common import friendly, session_of
from .models import can_be_a_base, load

ADAPTER = "gpt-kjv-lora"  # the shipped LoRA adapter: gpt fine-tuned on the King James Bible
REPLAYED = "gpt-block"  # the shipped model trained with attention snapshots
FIRST_BUDGET_SECONDS = 60


@dataclass
class Targets:
    """The other tabs' components a step's button fills in."""

    tabs: gr.Tabs
    compare_models: gr.Dropdown
    compare_prompt: gr.Textbox
    train_mode: gr.Radio
    train_preset: gr.Dropdown
    train_corpus: gr.Dropdown
    train_budget: gr.Number
    train_base: gr.Dropdown
    inside_model: gr.Dropdown
    attention_model: gr.Dropdown
    hub_model: gr.Dropdown


def ladder_card() -> str:
    rungs = tour.ladder()
    if not rungs:
        return "The shipped models are missing: train one in the Train tab."
    steps = "\n".join(f"- {line}" for line in tour.what_each_rung_buys(rungs))
    return (f"{tour.ladder_table(rungs)}\n\n**What each rung buys** (val loss over the whole val split, "
            f"lower is better):\n{steps}\n\n{tour.loss_in_words(rungs)}")


_samples: dict[str, str] = {}


@friendly
def samples() -> str:
    """Every rung's continuation of one prompt, one seed: computed once (the shipped models do not
    change while the app runs), then served from memory to every visitor."""
    if not _samples:
        shipped = shipped_checkpoints()
        models = {r.name: load(shipped[r.name]) for r in tour.ladder() if r.name in shipped}
        _samples.update(tour.ladder_samples(models))
    cells = "".join(f"<div class='rung-sample'><b>{html.escape(name)}</b><pre>{html.escape(text)}</pre></div>"
                    for name, text in _samples.items())
    return (f"<p>Each rung continues <code>{html.escape(repr(tour.SAMPLE_PROMPT))}</code> for "
            f"{tour.SAMPLE_TOKENS} characters, seed {tour.SAMPLE_SEED}, temperature 0.8:</p>"
            f"<div class='rung-samples'>{cells}</div>")


def train_card() -> str:
    family, model, train = resolve_settings(preset=DEFAULT_PRESET)
    vocab_size = builtin_character_count("shakespeare")
    parameters = parameter_count(make_config(family, **{**model, "vocab_size": vocab_size}))
    shipped = {e["name"]: e for e in read_json(SHIPPED_DIR / "index.json")["checkpoints"]}.get(DEFAULT_PRESET)
    reference = (f" The shipped `{DEFAULT_PRESET}` is this preset after {shipped['steps']:,} steps "
                 f"({shipped['train_seconds']:.0f} s when it was built): val loss {shipped['full_val_loss']:.3f}."
                 if shipped else "")
    return (f"The `{DEFAULT_PRESET}` preset is a {model['n_layer']}-layer GPT of {parameters:,} parameters "
            f"on Shakespeare's {vocab_size} characters. The button sets it up with a "
            f"{FIRST_BUDGET_SECONDS}-second budget on Shakespeare: press **Start training** there and watch the "
            f"loss fall and the samples turn from noise into words.{reference}")


def lora_card() -> str:
    path = shipped_checkpoints().get(ADAPTER)
    if path is None:
        return "Fine-tune a model on the King James Bible with small LoRA adapters, and see what it forgets."
    metrics = read_json(path / "metrics.json")
    first, last = metrics["history"][0], metrics["history"][-1]
    (corpus, before), = first["other_val_loss"].items()
    after = last["other_val_loss"][corpus]
    return (f"LoRA trains small adapter matrices beside a frozen model. The shipped `{ADAPTER}` "
            f"trained {metrics['trainable_parameters']:,} of {metrics['parameters']:,} parameters for "
            f"{metrics['steps']:,} steps: its val loss on the Bible fell {first['val_loss']:.3f} → "
            f"{last['val_loss']:.3f}, while on {corpus}, what it knew, it rose {before:.3f} → {after:.3f}. "
            "That rise is the forgetting; the Train tab's fine-tune plots both curves as you train.")


def newest(request: gr.Request, fits=lambda path: True, fallback: str = "gpt") -> str:
    """The visitor's most recent model that ``fits``, else the shipped ``fallback``."""
    own = [name for name, path in session_of(request).own.items() if fits(path)]
    return own[-1] if own else fallback


def to_compare():
    return gr.Tabs(selected="compare"), list(tour.COMPARED), tour.SAMPLE_PROMPT


def to_train():
    return gr.Tabs(selected="train"), "from scratch", DEFAULT_PRESET, "shakespeare", FIRST_BUDGET_SECONDS


def to_inside(request: gr.Request):
    return gr.Tabs(selected="inside"), newest(request)


def to_attention(request: gr.Request):
    return gr.Tabs(selected="attention"), newest(request, has_attention_snapshots, REPLAYED)


def to_lora(request: gr.Request):
    # the mode's change fills in the fine-tune's own steps and learning rate
    return gr.Tabs(selected="train"), "LoRA fine-tune", newest(request, can_be_a_base), "kjv"


def to_hub(request: gr.Request):
    return gr.Tabs(selected="hub"), newest(request)


STEPS = (
    ("1 · Climb the ladder", "Compare six rungs side by side →"),
    ("2 · Train your own in about a minute", "Set up a one-minute training →"),
    ("3 · Look inside it", "Open Inside →"),
    ("4 · Watch its heads form", "Open Attention →"),
    ("5 · Fine-tune it with LoRA on the King James Bible, and see what it forgets", "Set up a LoRA fine-tune →"),
    ("6 · Push it to the Hub", "Open the Hub tab →"),
)


def build(app: gr.Blocks) -> list[gr.Button]:
    """The tab's text and buttons; ``connect`` wires the buttons once the other tabs exist."""
    gr.Markdown("## Start here\nSix steps through BabyGPT. Each works now, with the models that come with it; "
                "each button opens the tab that shows it, with the form filled in. After step 2 the steps use "
                "the model you trained.")
    texts = (
        None,
        train_card(),
        "Inside walks one forward pass of a model on a prompt, stage by stage: the tokens, the embedding, "
        "each block's attention and MLP, the logits, the probabilities and the token drawn — the real "
        "tensors of that model, with sentences quoting its numbers.",
        "While a model trains here, every evaluation keeps each head's attention on one fixed text. The "
        f"Attention tab replays them: press **Attention over training** and move the slider. Until you have "
        f"trained one, the shipped `{REPLAYED}` shows it.",
        lora_card(),
        "Download your model as a zip, or push it to a Hugging Face model repo with a generated model card; "
        "anyone can then load it back by its repo id.",
    )
    buttons = []
    for (title, label), text in zip(STEPS, texts):
        with gr.Group(elem_classes="start-step"):
            gr.Markdown(f"### {title}")
            if text is None:
                gr.Markdown(ladder_card())
                rung_samples = gr.HTML("<p>the rungs are writing their samples…</p>")
            else:
                gr.Markdown(text)
            buttons.append(gr.Button(label, variant="primary", size="sm"))
    app.load(samples, None, rung_samples, api_name="start_samples", show_progress="hidden")
    return buttons


def connect(buttons: list[gr.Button], to: Targets) -> None:
    compare, train, inside, attention, lora, hub = buttons
    compare.click(to_compare, None, [to.tabs, to.compare_models, to.compare_prompt], api_name="start_compare")
    train.click(to_train, None, [to.tabs, to.train_mode, to.train_preset, to.train_corpus, to.train_budget],
                api_name="start_train")
    inside.click(to_inside, None, [to.tabs, to.inside_model], api_name="start_inside")
    attention.click(to_attention, None, [to.tabs, to.attention_model], api_name="start_attention")
    lora.click(to_lora, None, [to.tabs, to.train_mode, to.train_base, to.train_corpus], api_name="start_lora")
    hub.click(to_hub, None, [to.tabs, to.hub_model], api_name="start_hub")


CSS = """
.rung-samples { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 8px; }
.rung-sample pre { white-space: pre-wrap; font-size: 0.85em; margin: 2px 0; }
.start-step { padding: 8px; margin-bottom: 8px; }
"""
