"""Tokenizers tab: train a byte-level BPE on a corpus and see what it does to a text.

The text's tokens are coloured one by one (their ids on hover), the first merges are listed in
the order BPE learned them, and characters are set against BPE-256/512/1024 on the same text:
compression and the share of the vocabulary used. A button queues the equal-budget
characters-against-BPE ablation on the Experiments tab. The math lives in ``babygpt.tokenizer_lab``.
"""

from __future__ import annotations

import html

import gradio as gr

from ..data import BUILTIN
from ..tokenizer_lab import COMPARED_SIZES, bpe_for, compared_tokenizers, first_merges, pieces, tokenizer_report
from .common import friendly, whole_number
from .train_tab import LIMITS, MIN_BPE_VOCAB, UPLOAD, corpus_source

SAMPLE_TEXT = ("ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n"
               "Arise, fair sun, and kill the envious moon.")
MAX_TEXT_CHARACTERS = 5000
MERGES_SHOWN = 30
REPORT_HEADERS = ["tokenizer", "vocabulary size", "tokens", "characters per token", "distinct tokens",
                  "vocabulary used"]
CSS = """
.tok-text {white-space: pre-wrap; font-family: monospace; line-height: 1.9;}
.tok-piece {border-radius: 3px; padding: 1px 0; margin-right: 1px; cursor: help;}
.tok-grid {display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 12px;}
.tok-col {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px;}
"""


def coloured(tokenizer, text: str) -> str:
    """The text as its tokens, each a coloured span whose hover shows its id(s)."""
    spans = []
    for n, piece in enumerate(pieces(tokenizer, text)):
        colour = f"hsla({(n * 67) % 360}, 70%, 60%, 0.35)"
        tip = f"token id {', '.join(map(str, piece.ids))}: {piece.text!r}"
        spans.append(f"<span class='tok-piece' style='background:{colour}' title='{html.escape(tip, quote=True)}'>"
                     f"{html.escape(piece.text)}</span>")
    return f"<div class='tok-text'>{''.join(spans)}</div>"


def shown_blank(text: str) -> str:
    """A merge's text with its spaces and newlines made visible (most early merges start with one)."""
    return text.replace(" ", "␣").replace("\n", "⏎")


def check_text(text) -> str:
    if not isinstance(text, str) or not text:
        raise ValueError("the text is empty: type or paste a few lines to tokenize")
    if len(text) > MAX_TEXT_CHARACTERS:
        raise ValueError(f"the text is {len(text):,} characters; the lab takes up to {MAX_TEXT_CHARACTERS:,}")
    return text


def check_corpus(corpus, upload=None) -> str:
    """A built-in corpus's name, or the path of the visitor's checked upload."""
    if corpus not in [*BUILTIN, UPLOAD]:
        raise ValueError(f"the corpus must be one of {', '.join(BUILTIN)} or an upload, got {corpus!r}")
    return corpus_source(corpus, upload)


def corpus_name(corpus: str) -> str:
    return corpus if corpus in BUILTIN else "your file"


@friendly
def train_bpe(corpus, vocab_size, text, upload=None):
    """(the text in tokens, the first merges, a note) for a BPE of that size."""
    corpus, text = check_corpus(corpus, upload), check_text(text)
    vocab_size = whole_number(vocab_size, "BPE vocabulary size", MIN_BPE_VOCAB, LIMITS["bpe_vocab_size"])
    tokenizer = bpe_for(corpus, vocab_size)
    report = tokenizer_report(f"BPE-{vocab_size}", tokenizer, text)
    note = (f"**BPE-{vocab_size}** learned on {corpus_name(corpus)}: this text is {report['tokens']:,} tokens, "
            f"{report['characters_per_token']:.2f} characters per token, using {report['distinct_tokens']:,} of its "
            f"{tokenizer.vocab_size:,} tokens ({100 * report['vocabulary_used']:.1f} %).")
    if tokenizer.vocab_size < vocab_size:
        note += f" The corpus filled only {tokenizer.vocab_size:,} of the {vocab_size:,} tokens asked for."
    merges = [[rank, *map(shown_blank, texts)] for rank, *texts in first_merges(tokenizer, MERGES_SHOWN)]
    return coloured(tokenizer, text), merges, note


@friendly
def side_by_side(corpus, text, upload=None):
    """(HTML columns, table rows): characters and BPE-256/512/1024 on the same text."""
    corpus, text = check_corpus(corpus, upload), check_text(text)
    columns, rows = [], []
    for name, tokenizer in compared_tokenizers(corpus).items():
        shown, note = text, ""
        unknown = getattr(tokenizer, "unknown_characters", lambda _: [])(text)
        if unknown:  # a character vocabulary has only the corpus's characters
            shown = "".join(ch for ch in text if ch not in set(unknown))
            left_out = html.escape(" ".join(map(repr, unknown)))
            note = f" · left out, not in {corpus_name(corpus)}'s characters: {left_out}"
        report = tokenizer_report(name, tokenizer, shown)
        rows.append([name, report["vocab_size"], report["tokens"], round(report["characters_per_token"], 3),
                     report["distinct_tokens"], f"{100 * report['vocabulary_used']:.1f} %"])
        columns.append(f"<div class='tok-col'><b>{name}</b> · {report['tokens']:,} tokens · "
                       f"{report['characters_per_token']:.2f} characters per token{note}{coloured(tokenizer, shown)}"
                       "</div>")
    return "<div class='tok-grid'>" + "".join(columns) + "</div>", rows


ABLATED_PRESET = "gpt"


@friendly
def to_ablation(corpus):
    """The equal-budget characters-against-BPE ablation, in the Experiments tab's form (every
    family has the tokenizer knob, so the preset's change event keeps it)."""
    values = ",".join(["char", *(f"bpe-{size}" for size in COMPARED_SIZES[1:])])
    if corpus not in BUILTIN:
        raise ValueError("an ablation in the app trains on a built-in corpus: pick one (the lab takes your file)")
    return gr.Tabs(selected="experiments"), ABLATED_PRESET, "tokenizer", values, 1, 20, corpus, None


def build(app: gr.Blocks) -> dict:
    """The tab; returns the components the char-vs-BPE button needs wired to the ablation."""
    gr.Markdown("### A tokenizer lab\nA tokenizer cuts text into the pieces a model predicts. Byte-level BPE starts "
                "from the 256 bytes and merges the most frequent neighbouring pair, again and again, until it has "
                "the vocabulary size asked for.")
    with gr.Row():
        corpus = gr.Dropdown([*BUILTIN, UPLOAD], value="shakespeare", label="corpus the tokenizer learns from")
        upload = gr.File(label="your corpus (UTF-8 .txt, up to 5 MB)", file_types=[".txt"], type="filepath")
        vocab_size = gr.Number(512, step=1, minimum=MIN_BPE_VOCAB, maximum=LIMITS["bpe_vocab_size"],
                               label=f"BPE vocabulary size (bpe_vocab_size, {MIN_BPE_VOCAB} to "
                                     f"{LIMITS['bpe_vocab_size']})")
    text = gr.Textbox(SAMPLE_TEXT, lines=4, label=f"text to tokenize (up to {MAX_TEXT_CHARACTERS:,} characters)")
    train = gr.Button("Train the BPE and tokenize", variant="primary")
    note = gr.Markdown()
    tokens = gr.HTML(elem_id="lab-tokens")
    merges = gr.Dataframe(headers=["rank", "left", "right", "merged"],
                          label="the first merges, in learned order (␣ is a space, ⏎ a newline)",
                          elem_id="lab-merges")
    gr.Markdown("#### Characters against BPE, on the same text")
    compare_button = gr.Button("Compare characters, BPE-256, BPE-512 and BPE-1024")
    table = gr.Dataframe(headers=REPORT_HEADERS, label="compression and vocabulary use", elem_id="lab-table")
    columns = gr.HTML(elem_id="lab-columns")
    gr.Markdown("A loss per token cannot compare tokenizers: a BPE token spells several characters. Train the same "
                "model on each with the same time budget and compare **bits per character**:")
    ablate = gr.Button("Queue the characters-against-BPE ablation (gpt, 20 s each) →")
    lab = [corpus, vocab_size, text, upload]
    train.click(train_bpe, lab, [tokens, merges, note], api_name="tokenizer_lab", show_progress_on=note)
    compare_button.click(side_by_side, [corpus, text, upload], [columns, table], api_name="tokenizers_side_by_side")
    # No empty panel on first open: the sample text, tokenized both ways.
    app.load(train_bpe, lab, [tokens, merges, note], api_name="tokenizer_lab_first_open", show_progress="hidden")
    app.load(side_by_side, [corpus, text, upload], [columns, table], api_name="tokenizers_first_open",
             show_progress="hidden")
    return {"corpus": corpus, "ablate": ablate}


def connect(parts: dict, tabs: gr.Tabs, ablation: dict) -> None:
    """The ablation button: fill the Experiments tab's ablation form, open it, start the ablation
    (``ablation``: the form's fields by link name, ``start``: its Run button's event, and
    ``clear_stop_note``: the event that clears the last ablation's Stop answer)."""
    names = ("ablate_preset", "knob", "values", "seeds", "budget", "ablate_corpus")
    fields = [ablation["fields"][name] for name in names]
    outputs = [tabs, *fields, ablation["base_model"]]  # the preset is the base, not a model of the visitor's
    parts["ablate"].click(to_ablation, parts["corpus"], outputs, api_name="tokenizer_ablation",
                          show_progress="hidden").success(**ablation["start"], api_name="ablate_tokenizers")
    parts["ablate"].click(**ablation["clear_stop_note"])
