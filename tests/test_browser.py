"""End to end in a real browser: Debian's chromium driven by Playwright (no downloaded browser).

Visits every tab, trains 30 steps and watches the plot, LoRA fine-tunes 10 steps, compares 3 models (token colours, the
top-5 tooltips, the entropy switch), renders attention heatmaps (also of the generated text) and
reads the stats. Screenshots of each tab go to test-artifacts/. Any console error
fails the test.
"""

import shutil
import time
from pathlib import Path

import pytest

playwright = pytest.importorskip("playwright.sync_api")

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def page(app_url):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed: the README's test command installs it")
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.console_errors = []
        page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
        page.on("pageerror", lambda e: page.console_errors.append(str(e)))
        page.goto(app_url, wait_until="domcontentloaded")
        page.get_by_role("tab", name="Train").wait_for(timeout=30_000)
        yield page
        browser.close()


def visible(locator):
    """The one element of a locator that is on screen (several tabs have fields of the same label)."""
    return next(locator.nth(i) for i in range(locator.count()) if locator.nth(i).is_visible())


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def record_texts(page, selector: str) -> None:
    """Keep every text the element shows from now on (a status that a run's next line replaces
    within a second would slip between a wait's polls)."""
    page.evaluate("""selector => {
        const seen = (window.seenTexts ??= {})[selector] = [];
        const note = () => {
            const text = document.querySelector(selector)?.innerText;
            if (text !== undefined && text !== seen[seen.length - 1]) seen.push(text);
        };
        const observers = (window.textObservers ??= {});
        observers[selector]?.disconnect();  // a new record replaces the last one, and its watching
        observers[selector] = new MutationObserver(note);
        observers[selector].observe(document.body, {subtree: true, childList: true, characterData: true});
        note();
    }""", selector)


SHOWS = "([selector, text]) => document.querySelector(selector)?.innerText.includes(text)"
HAS_SHOWN = "([selector, text]) => window.seenTexts[selector].some(t => t.includes(text))"


def shows(page, selector: str, text: str, timeout: float = 60_000, ever: bool = False) -> None:
    """Wait until the element shows the text (``ever``: has shown it since ``record_texts``); fail
    with what it shows, the page's messages and its console errors."""
    try:
        page.wait_for_function(HAS_SHOWN if ever else SHOWS, arg=[selector, text], timeout=timeout)
    except playwright.TimeoutError:
        shown = page.evaluate("s => window.seenTexts?.[s] ?? document.querySelector(s)?.innerText", selector)
        toasts = page.evaluate("[...document.querySelectorAll('.toast-body')].map(t => t.innerText)")
        pytest.fail(f"{selector} did not show {text!r} in {timeout / 1000:g} s; it shows {shown!r}; "
                    f"messages on the page: {toasts}; console errors: {page.console_errors}")


REFERENCE_CURVES = "[...document.querySelectorAll('.gtitle')].some(e => e.textContent.includes('for reference'))"


def test_no_tab_opens_empty(page):
    """Before anything is clicked, the tabs that look at a model show the shipped gpt."""
    page.wait_for_function("document.querySelectorAll('.rung-sample').length === 8", timeout=60_000)  # Start here
    open_tab(page, "Train")
    page.wait_for_function(REFERENCE_CURVES, timeout=30_000)
    assert page.locator(".js-plotly-plot .scatterlayer .trace").count() == 2, "the shipped gpt's train and val"
    open_tab(page, "Inside")
    page.wait_for_function("document.body.innerText.includes('Sampling the next token')", timeout=60_000)
    open_tab(page, "Attention")
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .heatmaplayer').length >= 3", timeout=60_000)
    assert "tokens · 4 layers × 4 heads" in page.inner_text("body")
    open_tab(page, "Model stats")
    page.get_by_text("Chinchilla").wait_for(timeout=60_000)
    open_tab(page, "Hub")
    choosers = page.get_by_label("model", exact=True)
    shown = [choosers.nth(i).input_value() for i in range(choosers.count()) if choosers.nth(i).is_visible()]
    assert shown == ["gpt"]


def test_train_30_steps_and_watch_the_plot(page):
    open_tab(page, "Train")
    steps = page.get_by_label("training steps (max_iters)")
    steps.fill("30")
    steps.press("Enter")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("is ready").wait_for(timeout=120_000)
    traces = page.locator(".js-plotly-plot .scatterlayer .trace")
    assert traces.count() >= 3, "per-step train, evaluated train and val curves are drawn"
    assert not page.evaluate(REFERENCE_CURVES), "the run's own curves replaced the shipped ones"
    assert "my-gpt" in page.content()
    shot(page, "train")


def test_lora_finetune_mode_draws_the_forgetting_curve(page):
    open_tab(page, "Train")
    page.get_by_role("radio", name="LoRA fine-tune").check()
    start = page.get_by_role("button", name="Start fine-tune")
    start.wait_for(timeout=30_000)
    assert not page.get_by_role("button", name="Start training").is_visible()
    page.get_by_text("trainable parameters of").wait_for(timeout=30_000)  # the adapter's size, before training
    steps = page.get_by_label("training steps (max_iters)")
    steps.fill("10")
    steps.press("Enter")
    start.click()
    page.wait_for_function("document.body.innerText.includes('(the base corpus)')", timeout=120_000)
    page.wait_for_function("document.body.innerText.includes('val on shakespeare (base corpus)')", timeout=30_000)
    assert page.locator(".js-plotly-plot .scatterlayer .trace").count() >= 4, "train, val and base-corpus val"
    shot(page, "finetune")
    page.get_by_role("radio", name="from scratch").check()
    page.get_by_role("button", name="Start training").wait_for(timeout=30_000)


def test_compare_three_models_colours_tokens_and_shows_the_top_5(page):
    open_tab(page, "Compare")
    page.get_by_role("button", name="Generate").click()
    columns = page.locator(".bg-col")
    page.wait_for_function("document.querySelectorAll('.bg-col').length === 3", timeout=60_000)
    page.wait_for_function(
        "[...document.querySelectorAll('.bg-text')].every(e => e.textContent.length > 100)", timeout=60_000
    )
    page.wait_for_function("!document.querySelector('.bg-grid').textContent.includes('writing…')", timeout=60_000)
    assert columns.count() == 3
    header = columns.first.locator(".bg-head").inner_text()
    assert "tok/s" in header and "first token" in header and " ms" in header
    token = page.locator(".bg-tok").nth(5)
    tip = token.get_attribute("title")
    assert "the model's top 5" in tip and "p = " in tip and len(tip.splitlines()) == 7
    before = token.evaluate("e => getComputedStyle(e).backgroundColor")
    assert before not in ("", "rgba(0, 0, 0, 0)"), "tokens are coloured"
    token.hover()
    shot(page, "compare")
    page.get_by_role("radio", name="entropy").check()
    page.get_by_text("sure (low entropy)").wait_for(timeout=30_000)
    colours = page.locator(".bg-tok").evaluate_all("es => es.map(e => e.style.background)")
    assert len(set(colours)) > 3, "entropy shades differ from token to token"


def test_attention_heatmaps(page):
    open_tab(page, "Attention")
    page.get_by_role("button", name="Show attention").click()
    page.get_by_text("tokens · 4 layers × 4 heads").wait_for(timeout=60_000)
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .heatmaplayer').length >= 3", timeout=60_000)
    shot(page, "attention")
    page.get_by_role("button", name="BertViz-style head view and model view").click()
    page.wait_for_function("document.querySelectorAll('.bv svg line').length > 100", timeout=60_000)
    query = page.locator(".bv-q").nth(3)
    query.locator("text").hover()  # CSS keeps the hovered token's lines and fades the others
    faded = page.locator(".bv-q").nth(5).evaluate("e => getComputedStyle(e).opacity")
    assert float(faded) < 0.2 and float(query.evaluate("e => getComputedStyle(e).opacity")) == 1
    shot(page, "attention-lines")
    page.get_by_role("button", name="Logit lens of the text").click()
    page.get_by_text("the logit lens").wait_for(timeout=60_000)
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .heatmaplayer').length >= 4", timeout=60_000)
    page.get_by_role("button", name="Score head roles").click()
    page.get_by_text("random sequences of 32 tokens").wait_for(timeout=60_000)
    page.wait_for_function("document.body.innerText.includes('induction')", timeout=60_000)
    shot(page, "attention-interpret")


def choose(page, label: str, value: str) -> None:
    """Type into the visible dropdown of that label (every tab has a "model" one)."""
    chooser = visible(page.get_by_label(label, exact=True))
    chooser.click()
    chooser.fill(value)
    chooser.press("Enter")


INSIDE_FAMILIES = {"gpt": "Scores q·k/√32", "llama": "Rotary positions", "lstm": "the four gates",
                   "ngram": "embedded side by side", "bigram": "The table's row is the logits",
                   "gpt-kjv-lora": "The LoRA adapter"}


def test_inside_opens_on_a_walk_and_steps_through_every_family(page):
    open_tab(page, "Inside")
    # no empty tab: the shipped gpt's walk is there on first open
    page.wait_for_function("document.body.innerText.includes('Sampling the next token')", timeout=60_000)
    assert "1. Text → tokens" in page.inner_text("body")
    temperature = visible(page.get_by_label("number input for temperature (0 = greedy)"))
    temperature.fill("0")
    temperature.press("Enter")
    page.get_by_text("At temperature 0 there is no draw").wait_for(timeout=30_000)  # the draw, redone
    shot(page, "inside")
    for model, stage in INSIDE_FAMILIES.items():
        choose(page, "model", model)
        page.get_by_role("button", name="Walk through the forward pass").click()
        page.wait_for_function(f"document.body.innerText.includes({stage!r})", timeout=60_000)
        page.wait_for_function(f"document.body.innerText.includes({model + ': '!r})", timeout=60_000)
        shot(page, f"inside-{model}")
    choose(page, "model", "gpt")


def test_attention_of_the_text_generated_in_compare(page):
    open_tab(page, "Attention")
    page.get_by_role("button", name="Use the text generated in Compare").click()
    page.get_by_text("these are its last 64 tokens").wait_for(timeout=60_000)
    text = visible(page.get_by_label("text", exact=True)).input_value()
    assert text.startswith("Hamlet:") and len(text) > 150, "the gpt column's text fills the box"


def test_attention_over_training_replays_the_fine_tune(page):
    open_tab(page, "Attention")
    choose(page, "model", "my-gpt-lora")
    page.get_by_role("button", name="Attention over training").click()
    page.get_by_text("2 snapshots, steps 0 to 10").wait_for(timeout=60_000)
    page.wait_for_function("[...document.querySelectorAll('.gtitle')].some(e => e.textContent === 'step 10')",
                           timeout=30_000)
    slider = visible(page.get_by_label("number input for evaluation"))
    slider.fill("0")
    slider.press("Enter")
    page.wait_for_function("[...document.querySelectorAll('.gtitle')].some(e => e.textContent === 'step 0')",
                           timeout=30_000)
    shot(page, "attention-over-training")
    choose(page, "model", "gpt")


def test_model_stats(page):
    open_tab(page, "Model stats")
    page.get_by_role("button", name="Show stats").click()
    page.get_by_text("Chinchilla").wait_for(timeout=60_000)
    assert "parameters per module" in page.content()
    shot(page, "stats")


def test_experiments_overlays_the_shipped_runs_and_one_trained_here(page):
    open_tab(page, "Experiments")
    curves = "document.querySelectorAll('#overlay-chart .scatterlayer .trace').length"
    page.wait_for_function(f"{curves} === 10", timeout=60_000)  # on first open: 5 shipped models, train and val
    assert "bits per character" in page.inner_text("body").lower()
    choose(page, "models (up to 12)", "my-gpt")  # trained in this page by the Train test above
    page.wait_for_function(f"{curves} === 12", timeout=60_000)
    page.get_by_role("radio", name="wall time (seconds)").check()
    x_titles = "[...document.querySelectorAll('#overlay-chart .g-xtitle')].map(e => e.textContent)"
    page.wait_for_function(f"{x_titles}.includes('training seconds')", timeout=30_000)
    table = page.locator("#overlay-table").inner_text()
    assert "my-gpt" in table and "bits per character" in table, table
    shot(page, "experiments")


def test_an_ablation_runs_from_the_page_one_run_after_another(page):
    open_tab(page, "Experiments")
    choose(page, "base (preset)", "bigram")
    page.wait_for_function("document.body.innerText.includes('knob (the setting to change)')")
    choose(page, "knob (the setting to change)", "learning_rate")
    values = visible(page.get_by_label("values (2 to 5, comma-separated)"))
    values.fill("0.1,0.03,0.01")
    budget = visible(page.get_by_label("time budget per run, seconds (max_seconds, ≤ 60)"))
    budget.fill("2")
    budget.press("Enter")
    record_texts(page, "#ablation-status")
    page.get_by_role("button", name="Run the ablation").click()
    shows(page, "#ablation-status", "3 runs queued", timeout=30_000, ever=True)
    shows(page, "#ablation-status", "done: 3 of 3 runs", timeout=120_000)
    board = page.locator("#ablation-board").inner_text()
    assert all(f"learning_rate={lr}" in board for lr in ("0.1", "0.03", "0.01")) and "best" in board, board
    curves = "document.querySelectorAll('#ablation-chart .scatterlayer .trace').length"
    assert page.evaluate(curves) == 6, "train and val of each run"
    shot(page, "ablation")
    files = page.locator("#ablation-files a[download]").evaluate_all("links => links.map(a => a.download)")
    assert sorted(files) == ["results.csv", "results.json"], files


def test_hub_tab_and_no_console_errors(page):
    open_tab(page, "Hub")
    page.get_by_role("button", name="Download checkpoint (zip)").wait_for()
    assert visible(page.get_by_text("repo layout (layout)"))
    assert visible(page.get_by_text("runs in transformers' pipeline, BabyGPT's files in babygpt/ (transformers)"))
    assert visible(page.get_by_text("transformers GPT-2 or Llama", exact=False).first)
    shot(page, "hub")
    assert page.console_errors == []


def test_leaving_the_page_deletes_the_visitors_files(app_and_its_tmp, page):
    import glob
    import os
    import time

    app_url, server_tmp = app_and_its_tmp
    pattern = os.path.join(server_tmp, "babygpt-session-*")  # the app's session folders
    before = set(glob.glob(pattern))
    visitor = page.context.browser.new_page()  # a second visitor, in the same browser
    visitor.goto(app_url, wait_until="domcontentloaded")
    open_tab(visitor, "Compare")
    visitor.get_by_role("button", name="Generate").click()
    visitor.wait_for_function("document.querySelectorAll('.bg-col').length === 3", timeout=60_000)
    created = set(glob.glob(pattern)) - before
    assert len(created) == 1, "the visit made one session folder"
    visitor.close()
    deadline = time.monotonic() + 30
    while any(os.path.exists(d) for d in created) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(os.path.exists(d) for d in created), "the folder is deleted when the visitor leaves"


def test_a_new_visitor_follows_start_here_step_by_step(page, app_url):
    """A second visitor, as a learner would: Start here first, each step's button, each tab it opens."""
    visitor = page.context.browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    visitor.on("console", lambda m: m.type == "error" and errors.append(m.text))
    visitor.on("pageerror", lambda e: errors.append(str(e)))
    visitor.goto(app_url, wait_until="domcontentloaded")
    # the first tab: the ladder's table, what each rung buys, every rung's sample
    visitor.get_by_text("What each rung buys").wait_for(timeout=30_000)
    visitor.wait_for_function("document.querySelectorAll('.rung-sample').length === 8", timeout=60_000)
    assert "as unsure as picking among" in visitor.inner_text("body")
    shot(visitor, "start-here")

    def step(button: str):
        open_tab(visitor, "Start here")
        visitor.get_by_role("button", name=button).click()

    step("Compare six rungs side by side →")
    visitor.get_by_role("button", name="Generate").wait_for(timeout=30_000)  # roles match shown elements only
    visitor.wait_for_function("[...document.querySelectorAll('textarea')].some(t => t.value === 'ROMEO:\\n')",
                              timeout=30_000)
    tokens = visible(visitor.get_by_label("max new tokens (≤ 1000)"))
    tokens.fill("30")  # the learner keeps 200; the test needs fewer
    tokens.press("Enter")
    visitor.get_by_role("button", name="Generate").click()
    visitor.wait_for_function("document.querySelectorAll('.bg-col').length === 6", timeout=90_000)
    visitor.wait_for_function("!document.querySelector('.bg-grid').textContent.includes('writing…')", timeout=90_000)
    shot(visitor, "start-compare")

    step("Set up a one-minute training →")
    visitor.get_by_role("button", name="Start training").wait_for(timeout=30_000)
    budget = visible(visitor.get_by_label("time budget (s, 0 = none)"))
    assert budget.input_value() == "60"
    budget.fill("6")  # the test's minute is shorter
    budget.press("Enter")
    visitor.get_by_role("button", name="Start training").click()
    visitor.get_by_text("is ready").wait_for(timeout=120_000)

    step("Open Inside →")
    visitor.get_by_role("button", name="Walk through the forward pass").wait_for(timeout=30_000)
    visitor.wait_for_function("document.body.innerText.includes('my-gpt: ')", timeout=60_000)
    assert visible(visitor.get_by_label("model", exact=True)).input_value() == "my-gpt"

    step("Open Attention →")
    visitor.get_by_role("button", name="Attention over training").wait_for(timeout=30_000)
    assert visible(visitor.get_by_label("model", exact=True)).input_value() == "my-gpt"
    visitor.get_by_role("button", name="Attention over training").click()
    # the test's 6-s run evaluates once or twice; a minute's run a few times
    visitor.wait_for_function("document.body.innerText.includes('of every head on the')", timeout=60_000)
    shot(visitor, "start-attention")

    step("Set up a LoRA fine-tune →")
    start = visitor.get_by_role("button", name="Start fine-tune")
    start.wait_for(timeout=30_000)
    assert visible(visitor.get_by_label("base model (kept frozen)")).input_value() == "my-gpt"
    assert visible(visitor.get_by_label("corpus", exact=True)).input_value() == "kjv"
    steps = visible(visitor.get_by_label("training steps (max_iters)"))
    steps.fill("10")
    steps.press("Enter")
    start.click()
    visitor.wait_for_function("document.body.innerText.includes('(the base corpus)')", timeout=120_000)

    step("Open the Hub tab →")
    visitor.get_by_role("button", name="Download checkpoint (zip)").wait_for(timeout=30_000)
    assert visible(visitor.get_by_label("model", exact=True)).input_value() == "my-gpt-lora"
    assert errors == []
    visitor.close()


def visitor_at(page, url: str):
    """A new visitor (their own session) opening ``url``; console errors collected on it."""
    visitor = page.context.browser.new_page(viewport={"width": 1400, "height": 1000})
    visitor.console_errors = []
    visitor.on("pageerror", lambda e: visitor.console_errors.append(str(e)))
    visitor.goto(url, wait_until="domcontentloaded")
    return visitor


def value_becomes(locator, value: str, seconds: float = 30) -> bool:
    """Whether the visible field of that locator shows ``value`` within ``seconds`` (a link's values
    arrive through the page's load event, a preset's through that preset's change event)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if visible(locator).input_value() == value:
            return True
        time.sleep(0.2)
    return False


def train_from_the_filled_form(visitor) -> tuple[str, list]:
    """Start training, wait for it: (the result's line, every curve's y values)."""
    visitor.get_by_role("button", name="Start training").click()
    visitor.get_by_text("is ready").wait_for(timeout=120_000)
    line = visitor.get_by_text("is ready").inner_text()
    curves = visitor.evaluate("[...document.querySelectorAll('#train-plot .js-plotly-plot')].flatMap("
                              "p => p.data.map(t => [t.name, Array.from(t.y)]))")
    return line, curves


LINK = "?tab=train&preset=llama&n_layer=1&n_head=2&n_embd=16&block_size=16&batch_size=4&max_iters=20&seed=3"


def test_a_link_fills_the_train_form_and_the_same_link_trains_the_same_curve(page, app_url):
    first = visitor_at(page, app_url + LINK + "&corpus=../../etc/passwd&evil=1&dropout=%3Cb%3Ehi%3C/b%3E")
    first.get_by_role("button", name="Start training").wait_for(timeout=30_000)  # the link opened the Train tab
    first.wait_for_function("document.querySelector('#link-note')?.innerText.includes('evil')", timeout=30_000)
    note = first.locator("#link-note").inner_text()
    assert "'corpus'='../../etc/passwd' is not one of" in note and "'evil' is not a setting" in note
    assert "'dropout'='<b>hi</b>' is not a number" in note, "shown as text, not as markup"
    assert value_becomes(first.get_by_label("layers (n_layer)"), "1"), "the link's, not llama's 4"
    assert value_becomes(first.get_by_label("width (n_embd)"), "16")
    line, curves = train_from_the_filled_form(first)
    assert "after 20 steps" in line and len(curves) >= 2
    first.get_by_role("button", name="Copy a link to this form").click()
    first.wait_for_function("document.querySelector('#train-link textarea, #train-link input')?.value"
                            ".startsWith('http')", timeout=30_000)
    link = first.locator("#train-link textarea, #train-link input").first.input_value()
    assert link.startswith(app_url + "?tab=train&preset=llama&n_layer=1&n_head=2&n_embd=16&block_size=16"), link
    assert "seed=3" in link and "corpus=shakespeare" in link and "bf16" not in link
    again = visitor_at(page, link)  # another visitor, the copied link
    again.get_by_role("button", name="Start training").wait_for(timeout=30_000)
    assert value_becomes(again.get_by_label("layers (n_layer)"), "1")
    line_again, curves_again = train_from_the_filled_form(again)
    assert curves_again == curves, "the same link and seed: the same curve"
    best = lambda text: text.split("best val loss ")[1].split(" s.")[0].rsplit(",", 1)[0]  # noqa: E731
    assert best(line_again) == best(line), "the same best val loss after the same steps (the seconds differ)"
    assert first.console_errors == again.console_errors == []
    first.close()
    again.close()


def test_a_link_fills_an_ablation_whose_knob_belongs_to_another_family(page, app_url):
    visitor = visitor_at(page, app_url + "?tab=experiments&ablate_preset=lstm&knob=n_hidden&values=32,64&seeds=2"
                                         "&budget=5")
    visitor.get_by_role("button", name="Run the ablation").wait_for(timeout=30_000)
    assert value_becomes(visitor.get_by_label("knob (the setting to change)"), "n_hidden"), "lstm's own knob"
    assert visible(visitor.get_by_label("values (2 to 5, comma-separated)")).input_value() == "32,64"
    visitor.get_by_role("button", name="Copy a link to this ablation").click()
    visitor.wait_for_function("document.querySelector('#ablation-link textarea, #ablation-link input')?.value"
                              ".startsWith('http')", timeout=30_000)
    link = visitor.locator("#ablation-link textarea, #ablation-link input").first.input_value()
    assert link == (app_url + "?tab=experiments&ablate_preset=lstm&knob=n_hidden&values=32%2C64&seeds=2&budget=5"
                              "&ablate_corpus=shakespeare"), link
    assert visitor.console_errors == []
    visitor.close()


def test_the_tokenizer_lab_colours_tokens_and_queues_the_char_against_bpe_ablation(page):
    open_tab(page, "Tokenizers")
    page.wait_for_function("document.querySelectorAll('#lab-tokens .tok-piece').length > 10", timeout=60_000)
    page.wait_for_function("document.querySelectorAll('#lab-columns .tok-col').length === 4", timeout=60_000)
    piece = page.locator("#lab-tokens .tok-piece").nth(3)
    assert piece.get_attribute("title").startswith("token id ")
    assert "merged" in page.locator("#lab-merges").inner_text()
    table = page.locator("#lab-table").inner_text()
    assert all(name in table for name in ("characters", "BPE-256", "BPE-512", "BPE-1024"))
    shot(page, "tokenizers")
    record_texts(page, "#ablation-status")
    page.get_by_role("button", name="Queue the characters-against-BPE ablation (gpt, 20 s each) →").click()
    shows(page, "#ablation-status", "3 runs queued (tokenizer ∈ {char, bpe-512, bpe-1024}", ever=True)
    assert value_becomes(page.get_by_label("knob (the setting to change)"), "tokenizer")
    # Stop while the first run trains: pressed before it takes its turn, Stop ends the ablation with no run
    # (test_app's test_an_ablation_stopped_before_its_first_run_trains_none), and nothing would be on the board.
    shows(page, "#ablation-status", "run 1 of 3: tokenizer=char", timeout=120_000)
    page.get_by_role("button", name="Stop the ablation").click()
    shows(page, "#ablation-stop-note", "stopping")
    # Stop's answer and the ablation's last word may arrive in either order: the last word stays.
    shows(page, "#ablation-status", "stopped: 1 of 3 runs", timeout=120_000)
    assert "tokenizer=char" in page.locator("#ablation-board").inner_text()
