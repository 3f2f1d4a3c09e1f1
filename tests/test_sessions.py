"""Per-visitor state of the app, tested without a server."""

import threading
import time

from babygpt.ui.models import end_session, open_sessions, session_for, shipped_checkpoints


class FakeTrainer:
    def __init__(self):
        self.stopped = threading.Event()

    def stop(self):
        self.stopped.set()


def test_sessions_are_separate_and_cleaned_up_when_they_end():
    alice, bob = session_for("alice"), session_for("bob")
    assert alice is session_for("alice") and alice is not bob
    name, folder = alice.new_model_dir("gpt")
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"x")
    alice.own[name] = folder
    alice.trainer = FakeTrainer()
    assert name in alice.models() and name not in bob.models()
    assert set(shipped_checkpoints()) <= set(bob.models())
    before = open_sessions()
    end_session("alice")
    assert not alice.folder.exists(), "the session's files are deleted"
    assert alice.trainer.stopped.is_set(), "its training is stopped"
    assert open_sessions() == before - 1
    end_session("bob")
    end_session("nobody")  # ending an unknown session is harmless


def test_new_model_names_are_unique_and_safe():
    session = session_for("names")
    try:
        name, folder = session.new_model_dir("../../etc/passwd")
        assert "/" not in name and folder.parent == session.folder
        session.own[name] = folder
        again, _ = session.new_model_dir("../../etc/passwd")
        assert again != name
        assert session.new_model_dir("gpt")[0] == "my-gpt"
        assert session.new_model_dir("my-gpt-lora")[0] == "my-gpt-lora", "a fine-tune of my-gpt: one my-"
    finally:
        end_session("names")


def test_every_event_of_the_app_is_a_named_public_api():
    from babygpt.ui import build_app
    from babygpt.ui.train_tab import EMPTIED_IN_THE_PAGE

    app = build_app()
    # unload is no API event; the copy-link buttons' second step and the clearing of Stop's answer
    # when a run starts run in the page only (no Python)
    events = [fn for fn in app.fns.values() if fn.name != "forget_session" and fn.fn is not None]
    page_only = [fn for fn in app.fns.values() if fn.fn is None and bool(fn.js)]
    clears = [fn for fn in page_only if fn.js == EMPTIED_IN_THE_PAGE]
    assert len(page_only) - len(clears) == 2, "the two copy-link steps"
    assert len(clears) == 3, "Start training or fine-tune (one event), Run the ablation, the tokenizer lab's ablation"
    assert all(fn.api_visibility == "private" for fn in page_only)
    assert events and all(fn.api_visibility == "public" for fn in events), [fn.name for fn in events]
    names = [fn.api_name for fn in events]
    assert len(names) == len(set(names)) and not any(n.startswith(("lambda", "describe_")) for n in names), names


def test_sessions_unused_for_too_long_end_with_their_files_unless_training(monkeypatch):
    """API clients never close a page, so app.unload never ends their sessions: idleness does."""
    from babygpt.ui import models

    monkeypatch.setattr(models, "IDLE_SECONDS", 0.05)
    idle, busy = session_for("idle-visitor"), session_for("training-visitor")
    (idle.folder / "my-gpt").mkdir()
    busy.trainer = object()  # a run in progress
    time.sleep(0.1)
    session_for("someone-else")
    assert not idle.folder.exists() and "idle-visitor" not in models._sessions
    assert busy.folder.exists() and session_for("training-visitor") is busy
    busy.trainer = None
    for key in ("training-visitor", "someone-else"):
        end_session(key)


def test_a_long_request_keeps_its_session_until_its_last_answer(monkeypatch):
    """Idle time runs from a request's last answer, not from its start: a training or a Compare
    longer than the idle limit must not lose the session the moment it ends (the load test found a
    trainer whose model was gone when its training, longer than the limit, returned)."""
    from babygpt.ui import compare_tab, models

    monkeypatch.setattr(models, "IDLE_SECONDS", 0.3)
    monkeypatch.setattr(compare_tab, "REDRAW_SECONDS", 0.0)  # an answer after every token
    monkeypatch.setattr(compare_tab, "TOKENS_PER_TURN", 1)
    visitor = session_for("long-request")

    class Request:
        session_hash = "long-request"

    steps = compare_tab.compare.__wrapped__(["bigram"], "a", 30, 1.0, 0, 1.0, 0, request=Request())
    next(steps)
    started = time.monotonic()
    for _ in steps:  # a Compare running past the idle limit, others visiting meanwhile
        time.sleep(0.02)
        session_for("someone-else-2")
    assert time.monotonic() - started > 0.3, "the Compare ran past the idle limit"
    time.sleep(0.1)
    session_for("someone-else-2")
    assert models._sessions.get("long-request") is visitor and visitor.folder.exists()
    time.sleep(0.4)
    session_for("someone-else-2")
    assert "long-request" not in models._sessions, "once idle for the limit after its last answer, it ends"
    end_session("someone-else-2")


def test_a_sessions_loaded_models_leave_memory_with_it_and_the_cache_is_bounded(monkeypatch):
    """Loaded models are cached for speed; a crowd of visitors must not pile them up."""
    import shutil

    from babygpt.ui.models import LoadedModels

    cache = LoadedModels(size=3)
    monkeypatch.setattr("babygpt.ui.models.loaded_models", cache)
    alice = session_for("alice-loads")
    name, folder = alice.new_model_dir("gpt")
    shutil.copytree(shipped_checkpoints()["gpt"], folder)
    alice.own[name] = folder
    mine = alice.load(name)
    assert alice.load(name) is mine, "cached"
    alice.load("bigram")
    assert len(cache) == 2
    end_session("alice-loads")
    assert len(cache) == 1, "the shipped model stays; the session's own left with it"
    bob = session_for("bob-loads")
    for shipped in ["gpt", "llama", "ngram", "gpt-block", "bigram"]:
        bob.load(shipped)
    assert len(cache) == 3
    end_session("bob-loads")
