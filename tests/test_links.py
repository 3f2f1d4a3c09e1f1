"""Links that reproduce a run: every parameter checked like the form's field, the rest left out with a note.

Each case of ``HOSTILE`` is a row of SECURITY.md's table of links (a test checks the table lists
exactly these). The browser test (test_browser.py) opens such links in chromium.
"""

import re
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from babygpt.ui.links import MAX_LINK_PARAMETERS, link_query, read_link
from babygpt.ui.train_tab import LIMITS

ROOT = Path(__file__).resolve().parent.parent

# (what the link carries, its query, the part of the note that says it was left out)
HOSTILE = [
    ("a corpus given as a path", "corpus=../../etc/passwd", "'corpus'='../../etc/passwd' is not one of"),
    ("a corpus given as an absolute path", "ablate_corpus=/etc/passwd", "'ablate_corpus'='/etc/passwd' is not one of"),
    ("a parameter no form has", "out_dir=/tmp/x", "'out_dir' is not a setting a link can fill in"),
    ("markup in a value", "dropout=<script>alert(1)</script>", "'dropout'='<script>alert(1)</script>' is not a number"),
    ("a number past the form's cap", "n_layer=1000", "'n_layer'='1000' is not a whole number from 1 to 12"),
    ("a number that is not whole", "n_head=2.5", "'n_head'='2.5' is not a whole number"),
    ("NaN for a number", "learning_rate=nan", "'learning_rate'='nan' is not a number"),
    ("infinity for a number", "max_seconds=inf", "'max_seconds'='inf' is not a number from 0 to 3600"),
    ("a preset no one has", "preset=gpt-9000", "'preset'='gpt-9000' is not one of"),
    ("a tab no one has", "tab=admin", "'tab'='admin' is not one of"),
    ("a knob the preset's family lacks", "ablate_preset=gpt&knob=n_kv_head", "knob='n_kv_head' is not a knob of"),
    ("ablation values with a path in them", "values=1,../2", "'values'='1,../2' is not up to 5 comma-separated"),
    ("more ablation values than the cap", "values=1,2,3,4,5,6", "'values'='1,2,3,4,5,6' is not up to 5"),
    ("more seeds than the cap", "seeds=6", "'seeds'='6' is not a whole number from 1 to 5"),
    ("a value of 10,000 characters", "seed=" + "9" * 10_000, "'seed' is longer than 100 characters"),
    # with the test's own tab and seed: one parameter past the cap
    (f"{MAX_LINK_PARAMETERS + 1} parameters", "&".join(f"p{i}=1" for i in range(MAX_LINK_PARAMETERS - 1)),
     f"the link has {MAX_LINK_PARAMETERS + 1} parameters (at most {MAX_LINK_PARAMETERS}): none was used"),
]


@pytest.mark.parametrize("what, query, note", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_bad_parameter_is_left_out_with_a_note_and_the_rest_is_kept(what, query, note):
    values, notes = read_link(dict(parse_qsl(f"tab=train&seed=3&{query}")), LIMITS)
    assert any(note in n for n in notes), notes
    if "none was used" not in note:
        assert values.get("seed") == 3 or "seed" in query, "the good parameters still fill the form"
    assert all(not isinstance(v, str) or ("/" not in v and "<" not in v) for v in values.values())


def test_a_link_round_trips_the_forms_values():
    values = {"tab": "train", "preset": "llama", "n_layer": 2, "learning_rate": 0.003, "max_seconds": 30.0,
              "corpus": "kjv", "tokenizer": "bpe", "bpe_vocab_size": 300, "seed": 3, "dropout": 0.1,
              "optimizer": "muon", "ablate_preset": "lstm", "knob": "n_hidden", "values": "32,64", "seeds": 2,
              "budget": 5.0, "ablate_corpus": "shakespeare"}
    query = link_query(values)
    assert query.startswith("?tab=train&preset=llama&n_layer=2")
    assert read_link(dict(parse_qsl(query[1:])), LIMITS) == (values, [])


def test_security_md_lists_exactly_these_link_cases():
    text = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| link \| (.+?) \| (.+?) \|$", text, flags=re.MULTILINE)
    assert [what for what, _ in rows] == [what for what, _, _ in HOSTILE]
