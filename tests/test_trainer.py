import json
import math

import pytest
import torch

from babygpt import checkpoint
from babygpt.attention import attention_weights
from babygpt.runs import new_run, resume_run
from babygpt.trainer import TrainConfig, learning_rate, make_optimizer

TINY_MODEL = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16, "dropout": 0.1}
TINY_TRAIN = {"batch_size": 4, "max_iters": 24, "eval_interval": 8, "eval_iters": 2, "sample_tokens": 16,
              "warmup_iters": 4}
TINY_TRAINING_WITH_SNAPSHOTS = {**TINY_TRAIN, "sample_tokens": 0, "attention_snapshots": True}


def losses(trainer, stop_at=None):
    result = {}
    for event in trainer.run():
        if event.kind == "step":
            result[event.step] = event.loss
            if event.step == stop_at:
                trainer.stop()
    return result


def tiny_run(tmp_path=None, **train):
    return new_run("shakespeare", preset="gpt", model=TINY_MODEL, train={**TINY_TRAIN, **train}, out_dir=tmp_path)


def test_same_seed_same_loss_curve():
    first, second = losses(tiny_run()), losses(tiny_run())
    assert len(first) == 24 and first == second
    assert losses(tiny_run(seed=7)) != first


def test_stop_and_resume_equals_an_uninterrupted_run(tmp_path):
    uninterrupted = losses(tiny_run(tmp_path / "a"))
    stopped = tiny_run(tmp_path / "b")
    partial = losses(stopped, stop_at=10)
    assert max(partial) == 10, "the stop request ends the run after the current step"
    assert checkpoint.load_checkpoint(tmp_path / "b").metrics["steps"] == 10
    resumed = losses(resume_run(tmp_path / "b"))
    assert min(resumed) == 11 and max(resumed) == 24
    for step in range(11, 25):
        assert resumed[step] == pytest.approx(uninterrupted[step], abs=1e-5), step
    for step in range(1, 11):
        assert partial[step] == uninterrupted[step]


@pytest.mark.parametrize("preset, model", [("gpt", TINY_MODEL), ("llama", {**TINY_MODEL, "n_kv_head": 1}),
                                           ("lstm", {"n_layer": 2, "n_embd": 16, "n_hidden": 24, "block_size": 16}),
                                           ("ngram", {"n": 3, "n_embd": 8, "n_hidden": 32, "block_size": 16})])
def test_muon_trains_the_hidden_matrices_and_resumes_exactly(tmp_path, preset, model):
    """optimizer="muon": Muon for the family's hidden matrices, AdamW for embeddings, head, norms and
    biases; the loss falls, and stop-and-resume equals an uninterrupted run (Muon's momentum saved)."""
    def run(out):
        return new_run("shakespeare", preset=preset, model=model, train={**TINY_TRAIN, "optimizer": "muon"},
                       out_dir=out)

    trainer = run(tmp_path / "a")
    hidden = {id(p) for p in trainer.model.hidden_matrices()}
    muon = trainer.optimizer.parts[1]
    assert isinstance(muon, torch.optim.Muon) and {id(p) for g in muon.param_groups for p in g["params"]} == hidden
    adamw = {id(p) for g in trainer.optimizer.parts[0].param_groups for p in g["params"]}
    assert adamw == {id(p) for p in trainer.model.parameters()} - hidden, "every other parameter with AdamW"
    head = [m.weight for m in trainer.model.modules() if isinstance(m, torch.nn.Linear)
            and m.out_features == trainer.model.config.vocab_size]
    assert head and all(id(p) in adamw for p in head), "the output head stays with AdamW"
    uninterrupted = losses(trainer)
    assert sum(list(uninterrupted.values())[-4:]) < sum(list(uninterrupted.values())[:4]), "it learns"
    stopped = run(tmp_path / "b")
    partial = losses(stopped, stop_at=10)
    resumed = losses(resume_run(tmp_path / "b"))
    assert min(resumed) == 11 and max(resumed) == 24
    for step in range(11, 25):
        assert resumed[step] == pytest.approx(uninterrupted[step], abs=1e-5), step
    assert partial[10] == uninterrupted[10]


def test_muon_is_torchs_with_the_orthogonalisation_in_a_chosen_dtype():
    """In bfloat16 it makes exactly torch.optim.Muon's updates; in float32 (a CPU that would emulate
    bf16) nearly the same ones, and its orthogonalised update is nearly orthogonal in both."""
    from babygpt.muon import Muon, orthogonalised

    torch.manual_seed(0)
    start = [torch.randn(48, 16), torch.randn(16, 64)]
    grads = [[torch.randn_like(w) for w in start] for _ in range(3)]
    results = {}
    for name, make in (("torch", lambda ps: torch.optim.Muon(ps, lr=0.02, adjust_lr_fn="match_rms_adamw")),
                       ("bf16", lambda ps: Muon(ps, torch.bfloat16, lr=0.02, adjust_lr_fn="match_rms_adamw")),
                       ("fp32", lambda ps: Muon(ps, torch.float32, lr=0.02, adjust_lr_fn="match_rms_adamw"))):
        params = [torch.nn.Parameter(w.clone()) for w in start]
        optimizer = make(params)
        for step in grads:
            for p, g in zip(params, step):
                p.grad = g.clone()
            optimizer.step()
        results[name] = [p.detach() for p in params]
    for ours, theirs in zip(results["bf16"], results["torch"]):
        assert torch.equal(ours, theirs)
    for ours, theirs in zip(results["fp32"], results["torch"]):
        torch.testing.assert_close(ours, theirs, atol=2e-3, rtol=0)
        assert not torch.equal(ours, theirs)
    x = orthogonalised(torch.randn(16, 64), (3.4445, -4.775, 2.0315), 5, 1e-7, torch.float32)
    singular = torch.linalg.svdvals(x)
    assert 0.5 < singular.min() and singular.max() < 1.5  # the quintic's band, not exactly 1


def test_muon_refuses_what_it_cannot_train_and_a_resume_may_not_switch_optimizers(tmp_path):
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="muon has no weight matrices to train inside this Bigram"):
        new_run("shakespeare", preset="bigram", train={**TINY_TRAIN, "optimizer": "muon"})
    losses(tiny_run(tmp_path), stop_at=5)
    with pytest.raises(ValueError, match="trained with adamw; resume it with adamw"):
        resume_run(tmp_path, train={"optimizer": "muon"})


def test_events_carry_what_the_ui_shows(tmp_path):
    events = list(tiny_run(tmp_path).run())
    kinds = [e.kind for e in events]
    assert kinds.count("step") == 24 and kinds.count("eval") == 3 and kinds[-1] == "done"
    step = events[0]
    assert step.loss > 0 and step.lr > 0 and step.tokens_per_sec > 0 and step.eta >= 0 and step.elapsed > 0
    assert step.tokens_seen == 4 * 16
    evaluation = next(e for e in events if e.kind == "eval")
    assert evaluation.train_loss > 0 and evaluation.val_loss > 0 and len(evaluation.sample) > 0
    assert events[-1].reason == "max_iters" and events[-1].checkpoint == str(tmp_path)


def test_the_addition_task_reports_exact_match_accuracy_at_each_evaluation(tmp_path):
    from babygpt.evaluation import addition_accuracy

    trainer = new_run("addition", preset="gpt", model=TINY_MODEL, train=TINY_TRAIN, out_dir=tmp_path)
    assert len(trainer.val_problems) == 100 and all("+" in p and "=" in p for p in trainer.val_problems)
    evaluations = [e for e in trainer.run() if e.kind == "eval"]
    assert len(evaluations) == 3 and all(0 <= e.accuracy <= 1 for e in evaluations)
    assert [h["accuracy"] for h in trainer.history] == [e.accuracy for e in evaluations]
    # the figure is the greedy exact-match share of those problems, measured again on the saved best
    saved = checkpoint.load_checkpoint(tmp_path)
    best = min(trainer.history, key=lambda h: h["val_loss"])
    assert addition_accuracy(saved.model, saved.tokenizer, trainer.val_problems) == best["accuracy"]
    # a corpus without answers has none
    assert tiny_run().val_problems == [] and all(e.accuracy is None for e in tiny_run().run() if e.kind == "eval")


def test_best_val_checkpoint_and_metrics(tmp_path):
    for _ in tiny_run(tmp_path, learning_rate=3e-3).run():
        pass
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    history = metrics["history"]
    assert [h["step"] for h in history] == [8, 16, 24]
    assert metrics["val_loss"] == min(h["val_loss"] for h in history)
    assert metrics["steps"] == 24 and metrics["tokens_seen"] == 24 * 4 * 16 and metrics["train_seconds"] > 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"]["family"] == "gpt" and config["tokenizer"] == "char" and config["corpus"] == "shakespeare"
    loaded = checkpoint.load_checkpoint(tmp_path)
    # model.safetensors holds the best weights: re-evaluating them gives the best val loss.
    trainer = tiny_run()
    trainer.model.load_state_dict(loaded.model.state_dict())
    assert trainer.estimate_loss()["val"] == pytest.approx(metrics["val_loss"], abs=1e-6)


def test_wall_clock_budget_stops_the_run_with_a_checkpoint(tmp_path):
    events = list(tiny_run(tmp_path, max_iters=100_000, max_seconds=1.0).run())
    assert events[-1].reason == "max_seconds"
    assert 0 < events[-1].step < 100_000 and events[-1].elapsed < 30
    assert events[-2].kind == "eval", "a stopped run evaluates before it finishes"
    assert checkpoint.load_checkpoint(tmp_path).metrics["steps"] == events[-1].step


def test_bfloat16_autocast_trains_on_cpu():
    result = losses(tiny_run(dtype="bfloat16", max_iters=12, learning_rate=3e-3))
    assert all(math.isfinite(v) for v in result.values())
    assert result[12] < result[1]


def test_learning_rate_schedule_warms_up_then_decays_by_cosine():
    config = TrainConfig(learning_rate=1.0, min_lr=0.1, warmup_iters=10, max_iters=110)
    rates = [learning_rate(step, config) for step in range(120)]
    assert rates[0] == pytest.approx(1 / 11) and rates[9] == pytest.approx(10 / 11)
    assert rates[10] == pytest.approx(1.0) and rates[60] == pytest.approx(0.55)
    assert rates[110] == rates[119] == 0.1
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))


def test_decay_by_clock_follows_the_time_budget_not_the_steps():
    config = TrainConfig(learning_rate=1.0, min_lr=0.1, warmup_iters=10, max_iters=100_000, max_seconds=60,
                         decay_by_clock=True)
    assert learning_rate(5, config, seconds=50.0) == pytest.approx(6 / 11), "warmup still counts steps"
    assert learning_rate(20, config, seconds=0.0) == pytest.approx(1.0)
    assert learning_rate(20, config, seconds=30.0) == pytest.approx(0.55), "half the time: half way down"
    assert learning_rate(20, config, seconds=60.0) == learning_rate(20, config, seconds=75.0) == 0.1
    few_steps = TrainConfig(learning_rate=1.0, min_lr=0.1, warmup_iters=10, max_iters=110, max_seconds=60,
                            decay_by_clock=True)
    assert learning_rate(60, few_steps, seconds=1.0) == pytest.approx(0.55), "the steps ran out first"
    no_budget = TrainConfig(learning_rate=1.0, min_lr=0.1, warmup_iters=10, max_iters=110, decay_by_clock=True)
    assert learning_rate(60, no_budget, seconds=1e6) == pytest.approx(0.55), "no budget: the steps decide"


def test_stable_fraction_holds_the_peak_then_decays_linearly():
    config = TrainConfig(learning_rate=1.0, min_lr=0.1, warmup_iters=0, max_iters=100, stable_fraction=0.6)
    rates = [learning_rate(step, config) for step in range(101)]
    assert rates[0] == rates[60] == 1.0
    assert rates[80] == pytest.approx(0.55) and rates[100] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="stable_fraction"):
        TrainConfig(stable_fraction=1.0)


def test_a_run_cut_by_its_time_budget_has_annealed_when_decaying_by_clock():
    trainer = tiny_run(max_iters=100_000, max_seconds=2.0, decay_by_clock=True, min_lr=1e-5, eval_interval=100_000)
    rates = [e.lr for e in trainer.run() if e.kind == "step"]
    assert trainer.step < 100_000 and rates[-1] < 0.1 * max(rates), "the cut came at the end of the decay"


def test_weight_decay_spares_biases_norms_and_embeddings():
    trainer = tiny_run()
    decayed, spared = trainer.optimizer.param_groups
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    assert decayed["weight_decay"] == 0.1 and spared["weight_decay"] == 0.0
    decayed_names = {names[id(p)] for p in decayed["params"]}
    spared_names = {names[id(p)] for p in spared["params"]}
    assert decayed_names and all(n.endswith(".weight") and ("c_" in n) for n in decayed_names)
    assert {"transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight"} <= spared_names
    assert all(n.endswith(".bias") or "ln" in n or "wte" in n or "wpe" in n for n in spared_names)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"model": {"n_embd": 30, "n_head": 4}}, "divisible by n_head"),
        ({"model": {"block_size": 0}}, "block_size must be at least 1"),
        ({"train": {"learning_rate": 0.0}}, "learning_rate must be positive"),
        ({"train": {"learning_rate": -1e-3}}, "learning_rate must be positive"),
        ({"train": {"learning_rate": float("nan")}}, "finite"),
        ({"train": {"batch_size": 0}}, "batch_size must be at least 1"),
        ({"train": {"dtype": "float16"}}, "dtype must be one of"),
        ({"train": {"device": "tpu"}}, "device must be"),
        ({"train": {"max_seconds": -1.0}}, "max_seconds must not be negative"),
        ({"train": {"epochs": 3}}, "unknown TrainConfig field"),
        ({"family": "transformer"}, "unknown model family"),
        ({"preset": "gpt-huge"}, "unknown preset 'gpt-huge'"),
        ({"family": "llama", "preset": "gpt"}, "is a gpt preset"),
        ({"model": {"n_kv_head": 2}}, "unknown GPTConfig field"),
    ],
)
def test_bad_hyperparameters_fail_before_training(arguments, message, monkeypatch):
    import babygpt.runs

    def no_data(*_):
        raise AssertionError("data was loaded before the settings were checked")

    monkeypatch.setattr(babygpt.runs, "load_text", no_data)
    with pytest.raises(ValueError, match=message):
        new_run("shakespeare", **arguments)


def test_loss_of_nan_stops_with_a_clear_error():
    trainer = tiny_run(max_iters=3)
    with torch.no_grad():
        trainer.model.transformer.wte.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="loss became nan"):
        losses(trainer)


def test_torch_compile_trains(tmp_path):
    pytest.importorskip("torch._inductor")
    # Dropout 0: inductor draws dropout masks from its own RNG, so only then is the maths the same.
    model = {**TINY_MODEL, "dropout": 0.0}
    compiled = losses(new_run("shakespeare", preset="gpt", model=model,
                              train={**TINY_TRAIN, "max_iters": 3, "compile": True}))
    eager = losses(new_run("shakespeare", preset="gpt", model=model, train={**TINY_TRAIN, "max_iters": 3}))
    assert len(compiled) == 3
    for step in compiled:  # same maths, fused differently: equal up to float rounding
        assert compiled[step] == pytest.approx(eager[step], abs=1e-3)


def test_optimizer_is_fused_adamw():
    trainer = tiny_run()
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    assert trainer.optimizer.defaults["fused"] is True
    optimizer = make_optimizer(trainer.model, TrainConfig(beta2=0.95, weight_decay=0.2), torch.device("cpu"))
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.2, 0.0]
    assert all(g["betas"] == (0.9, 0.95) for g in optimizer.param_groups)


def test_resume_applies_changed_settings_and_keeps_them_for_the_next_resume(tmp_path):
    losses(tiny_run(tmp_path, max_iters=8, weight_decay=0.0))
    resumed = resume_run(tmp_path, train={"max_iters": 40, "weight_decay": 0.05, "beta2": 0.9})
    assert [g["weight_decay"] for g in resumed.optimizer.param_groups] == [0.05, 0.0]
    assert all(g["betas"] == (0.9, 0.9) for g in resumed.optimizer.param_groups)
    losses(resumed, stop_at=12)
    again = resume_run(tmp_path)
    assert again.config.max_iters == 40 and again.config.beta2 == 0.9 and again.step == 12
    assert max(losses(again)) == 40


def test_resume_does_not_carry_the_machine_settings(tmp_path):
    before = torch.get_num_threads()
    losses(tiny_run(tmp_path, max_iters=4, threads=1))
    torch.set_num_threads(before)
    config_path = tmp_path / "config.json"
    config = json.loads(config_path.read_text())
    config["train"]["device"] = "cuda:0"  # as saved by a run on a GPU machine
    config_path.write_text(json.dumps(config))
    before = torch.get_num_threads()
    try:
        resumed = resume_run(tmp_path, train={"max_iters": 6})
        assert resumed.config.device == "auto" and resumed.config.threads == 0
    finally:
        torch.set_num_threads(before)


def test_resume_refuses_bad_directories_and_settings(tmp_path):
    with pytest.raises(ValueError, match="not a checkpoint directory"):
        resume_run(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        resume_run(tmp_path / "file")
    with pytest.raises(ValueError, match="is a file"):
        tiny_run(tmp_path / "file")
    run_dir = tmp_path / "run"
    losses(tiny_run(run_dir, max_iters=4))
    config = json.loads((run_dir / "config.json").read_text())
    for train, message in (({**config["train"], "seed": None}, "seed must be int"), ("fast", "malformed 'train'")):
        (run_dir / "config.json").write_text(json.dumps({**config, "train": train}))
        with pytest.raises(ValueError, match=message):
            resume_run(run_dir)


def test_a_stop_asked_before_the_run_starts_is_honoured():
    trainer = tiny_run(max_iters=10)
    trainer.stop()
    events = list(trainer.run())
    assert events[-1].reason == "stopped" and events[-1].step == 1


def test_a_stopped_trainer_can_run_again():
    trainer = tiny_run(max_iters=10)
    assert max(losses(trainer, stop_at=3)) == 3
    assert max(losses(trainer)) == 10


def test_device_auto_selection_prefers_cuda_then_mps_then_cpu(monkeypatch):
    from babygpt.trainer import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("auto").type == "cuda"
    with pytest.raises(ValueError, match="cuda:1 is not available"):
        pick_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto").type == "mps"
    with pytest.raises(ValueError, match="device cuda is not available"):
        pick_device("cuda")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto").type == "cpu"
    assert pick_device("cpu").type == "cpu"
    for name in ("tpu", "cuda:x", "gpu"):
        with pytest.raises(ValueError, match="device must be"):
            pick_device(name)


def test_thread_count_is_applied():
    before = torch.get_num_threads()
    try:
        tiny_run(threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_attention_snapshots_at_every_evaluation_survive_a_resume(tmp_path):
    trainer = new_run("shakespeare", preset="gpt", model={**TINY_MODEL, "dropout": 0.0},
                      train={**TINY_TRAINING_WITH_SNAPSHOTS}, out_dir=tmp_path / "run")
    losses(trainer, stop_at=10)
    tokens, snapshots = checkpoint.load_attention_snapshots(tmp_path / "run")
    assert list(snapshots) == [8, 10] and len(tokens) == 16  # every evaluation, and the one at the stop
    resumed = resume_run(tmp_path / "run")
    losses(resumed)
    tokens, snapshots = checkpoint.load_attention_snapshots(tmp_path / "run")
    assert list(snapshots) == [8, 10, 16, 24]
    assert "".join(tokens) == resumed.tokenizer.decode(resumed.dataset.val[:16].tolist())
    weights = attention_weights(resumed.model, torch.tensor([resumed.probe_ids()]))
    assert snapshots[24].shape == (2, 2, 16, 16) and snapshots[24].dtype == torch.float16
    assert torch.allclose(snapshots[24].float(), weights[0], atol=1e-3)  # the final model's own attention
    assert not torch.allclose(snapshots[8].float(), snapshots[24].float(), atol=1e-3)  # the heads changed


def test_models_without_attention_train_with_snapshots_asked_for(tmp_path):
    trainer = new_run("shakespeare", preset="bigram", train={**TINY_TRAINING_WITH_SNAPSHOTS}, out_dir=tmp_path)
    losses(trainer)
    assert not checkpoint.has_attention_snapshots(tmp_path)
