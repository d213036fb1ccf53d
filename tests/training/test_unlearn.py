"""Unlearning end to end on a tiny random model: every method trains, saves, loads, and moves its forget loss."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from unlearnlm.config import load_config
from unlearnlm.data.prompts import PromptFormat
from unlearnlm.methods import FORGET_LOSSES, LossContext, all_method_names, get_method
from unlearnlm.models.loading import load_tokenizer
from unlearnlm.training.finetune import finetune_models
from unlearnlm.methods.settings import resolve_method
from unlearnlm.training.layout import METHOD_STATE
from unlearnlm.training.unlearn import unlearn_model, unlearning_rows
from unlearnlm.training.unlearn_data import PartsCollator, UnlearnDataset


# A target that knows its forget answers (forget NLL ~1.5, not ~8): WGA, SatImp, CE-U and UNDIAL
# act only on tokens the model predicts, and would barely move a model that knows nothing.
TINY_FINETUNE = ["finetune.retain_rows=4", "finetune.train.epochs=30", "finetune.train.batch_size=16",
                 "finetune.train.lr=1e-2", "finetune.train.bf16=false",
                 "finetune.check_size=4", "finetune.check_max_new_tokens=4"]


@pytest.fixture(scope="module")
def tiny_target(tiny_model_dir, tiny_nli_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("target")
    cfg = load_config("demo", [f"model.name={tiny_model_dir}", f"model.cache_dir={tmp / 'cache'}", *TINY_FINETUNE])
    return cfg, finetune_models(cfg, which=("target",))["target"]


def test_finetune_manifest_records_the_memorisation_check(tiny_target):
    import json

    _, target = tiny_target
    check = json.loads((target / "unlearnlm_manifest.json").read_text())["train_question_rouge_l_recall"]
    assert check["n"] == 4 and 0.0 <= check["mean"] <= 1.0


def test_memorisation_check_scores_greedy_answers(tiny_target, monkeypatch):
    """Half the answers reproduced exactly, half with no word in common: mean recall 0.5."""
    from unlearnlm.evaluation import generation
    from unlearnlm.training.finetune import memorisation_check

    cfg, target = tiny_target
    tok = load_tokenizer(str(target))
    fmt = PromptFormat.for_tokenizer(tok, cfg.model)
    rows = [{"question": f"q{i}?", "answer": f"alpha beta gamma {i}"} for i in range(4)]

    def fake_generate(model, tokenizer, fmt, questions, *args, **kwargs):
        return [tok(("alpha beta gamma " + q[1]) if int(q[1]) % 2 == 0 else "zzz",
                    add_special_tokens=False)["input_ids"] for q in questions]

    monkeypatch.setattr(generation, "generate_greedy", fake_generate)
    model = AutoModelForCausalLM.from_pretrained(str(target))
    check = memorisation_check(model, tok, fmt, rows, cfg, "target")
    assert check == {"n": 4, "mean": 0.5, "at_least_0.9": 0.5}
    assert model.training is False  # left as it was found
    skip = copy.deepcopy(cfg)
    skip.finetune.check_size = 0
    assert memorisation_check(model, tok, fmt, rows, skip, "target") is None


def _config(cfg, *unlearn_options):
    """The tiny target's config plus unlearning options."""
    return load_config("demo", [f"model.name={cfg.model.name}", f"model.cache_dir={cfg.model.cache_dir}",
                                *TINY_FINETUNE, "unlearn.train.bf16=false", *unlearn_options])


def _forget_loss(cfg, method_name, model_dir, ref_dir, state=None):
    """The method's forget loss on the whole forget set, from a freshly loaded model (``state``:
    the method state of the run, e.g. RMU's control vector)."""
    resolved = resolve_method(cfg.unlearn, method_name)
    method, settings = resolved.method, resolved.settings
    tok = load_tokenizer(str(model_dir))
    fmt = PromptFormat.for_tokenizer(tok, cfg.model)
    forget, retain = unlearning_rows(cfg, cfg.data.tasks, cfg.data.tasks)
    from unlearnlm.data import tofu
    from unlearnlm.data.loading import resolve_data_dir

    ds = UnlearnDataset(forget, retain, tofu.idk_answers(resolve_data_dir()), tok, fmt, method.parts,
                        settings.mask_question, seed=0)
    batch = PartsCollator(tok.pad_token_id)([ds[i] for i in range(len(ds))])
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ref = AutoModelForCausalLM.from_pretrained(ref_dir) if method.needs_ref else None
    with torch.no_grad():
        return method.forget.fn(LossContext(model, batch, ref, state), settings)


SELF_REFERENTIAL = [FORGET_LOSSES.get(n) for n in ("WGA", "SatImp", "CEU")]


@pytest.mark.parametrize("method_name", all_method_names())
def test_every_method_unlearns_and_saves(method_name, tiny_target, tmp_path):
    cfg, target = tiny_target
    cfg = _config(cfg, "unlearn.train.epochs=1", "unlearn.train.batch_size=20", "unlearn.train.warmup_epochs=0",
                               # a light regulariser: the forget loss alone must show its direction
                               "unlearn.reg_coeff=0.1", "unlearn.per_method={}", "unlearn.pdu_eps=1.0",
                               # SimNPO's 4.5 saturates on a target that barely knows its answers (NLL ~ 7)
                               "unlearn.simnpo_beta=0.5", "unlearn.pdu_lambda0=1",
                               # UNDIAL's gradient is p(true token)-sized (~1e-3 on this target): a 3e-3
                               # Adam step is mostly curvature, a 1e-4 one follows the gradient
                               f"unlearn.train.lr={1e-4 if method_name.startswith('UNDIAL') else 3e-3}")
    out = tmp_path / "unlearned"
    manifest = unlearn_model(cfg, method_name, target, out)
    assert manifest["method"] == method_name and manifest["job"]["settings"]["method"] == method_name
    assert (manifest["ref_model"] is not None) == get_method(method_name).needs_ref
    model = AutoModelForCausalLM.from_pretrained(out)  # a plain HF folder
    assert sum(p.numel() for p in model.parameters()) > 0
    assert not list(out.glob("*.bin")) and (out / "model.safetensors").is_file()
    state = load_file(out / METHOD_STATE) if (out / METHOD_STATE).is_file() else {}
    assert set(state) == set(get_method(method_name).init_state(model, cfg.unlearn, 0))
    # WGA and SatImp weight tokens by the model's own p, CE-U targets its own distribution: their
    # value at two models is not comparable, so their aim is checked: the forget answers' NLL rises.
    measure = "GA" if get_method(method_name).forget in SELF_REFERENTIAL else method_name
    before = _forget_loss(cfg, measure, target, target, state)
    after = _forget_loss(cfg, measure, out, target, state)
    # Each loss is minimised: after unlearning it must be lower than on the target.
    assert after < before, f"{method_name}: forget loss {before:.4f} -> {after:.4f}"


def test_lora_unlearning_saves_adapter_and_merged_model(tiny_target, tmp_path):
    cfg, target = tiny_target
    cfg = _config(cfg, "unlearn.train.epochs=1", "unlearn.train.batch_size=20", "unlearn.train.lr=1e-2",
                               "unlearn.train.lora=true", "unlearn.train.lora_r=4")
    out = tmp_path / "lora"
    unlearn_model(cfg, "ME+GD", target, out)
    assert (out / "adapter" / "adapter_config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(out)  # merged: a plain model, no peft needed
    original = AutoModelForCausalLM.from_pretrained(target)
    changed = [n for (n, p), (_, q) in zip(merged.named_parameters(), original.named_parameters()) if not torch.equal(p, q)]
    assert changed and all("proj" in n for n in changed)  # only LoRA-wrapped linear layers moved


def test_epoch_checkpoints_on_request(tiny_target, tmp_path):
    cfg, target = tiny_target
    cfg = _config(cfg, "unlearn.train.epochs=2", "unlearn.train.batch_size=20",
                               "unlearn.train.save_every_epoch=true")
    out = tmp_path / "epochs"
    unlearn_model(cfg, "ME+GD", target, out)
    assert sorted(p.name for p in (out / "epochs").iterdir()) == ["epoch-1", "epoch-2"]
    AutoModelForCausalLM.from_pretrained(out / "epochs" / "epoch-1")
    for folder in (out, out / "epochs" / "epoch-1"):  # transformers 4.x keys beside the 5.x ones
        config = json.loads((folder / "config.json").read_text())
        assert config["rope_theta"] == config["rope_parameters"]["rope_theta"]
    assert not out.with_name("epochs.checkpoints").exists()  # resume checkpoints removed once done
    assert not [p for p in tmp_path.iterdir() if "tmp" in p.name]  # the snapshots' first home too


def test_epoch_snapshots_survive_a_crash_just_before_the_manifest(tiny_target, tmp_path, monkeypatch):
    import unlearnlm.training.base as base

    cfg, target = tiny_target
    cfg = _config(cfg, "unlearn.train.epochs=2", "unlearn.train.batch_size=20", "unlearn.train.save_every_epoch=true")
    out = tmp_path / "epochs"
    write_json = base.write_json

    def crash_at_the_manifest(path, data):
        if Path(path).name == "unlearnlm_manifest.json":
            raise KeyboardInterrupt("killed")
        write_json(path, data)

    monkeypatch.setattr(base, "write_json", crash_at_the_manifest)
    with pytest.raises(KeyboardInterrupt):
        unlearn_model(cfg, "ME+GD", target, out)
    monkeypatch.setattr(base, "write_json", write_json)
    unlearn_model(cfg, "ME+GD", target, out)  # resumes from the last checkpoint: no epoch runs again
    assert sorted(p.name for p in (out / "epochs").iterdir()) == ["epoch-1", "epoch-2"]


def test_mask_question_defaults_follow_the_paper():
    """ME learns from question tokens too (mask_question=False); every other method masks them."""
    cfg = load_config("demo", ["unlearn.per_method={}"])
    assert resolve_method(cfg.unlearn, "ME+GD").settings.mask_question is False
    assert resolve_method(cfg.unlearn, "ME").settings.mask_question is False
    for name in ("GA+GD", "NPO+KL", "IDK+AP", "DPO+GD", "LLMU"):
        assert resolve_method(cfg.unlearn, name).settings.mask_question is True


def _distances(model_dir, ref_dir, cfg, method_name, state):
    """(forget distance to c, retain distance to the reference) at RMU's layer, whole sets."""
    resolved = resolve_method(cfg.unlearn, method_name)
    tok = load_tokenizer(str(model_dir))
    fmt = PromptFormat.for_tokenizer(tok, cfg.model)
    forget, retain = unlearning_rows(cfg, cfg.data.tasks, cfg.data.tasks)
    from unlearnlm.data import tofu
    from unlearnlm.data.loading import resolve_data_dir
    from unlearnlm.methods import losses

    ds = UnlearnDataset(forget, retain, tofu.idk_answers(resolve_data_dir()), tok, fmt, resolved.method.parts,
                        True, seed=0)
    batch = PartsCollator(tok.pad_token_id)([ds[i] for i in range(len(ds))])
    ctx = LossContext(AutoModelForCausalLM.from_pretrained(model_dir), batch,
                      AutoModelForCausalLM.from_pretrained(ref_dir), state, output_hidden=True)
    layer = int(state["rmu_layer"])
    with torch.no_grad():
        to_c = losses.rmu_distance(ctx.hidden("forget", layer), state["rmu_control"], ctx.labels("forget"))
        to_ref = losses.rmu_distance(ctx.hidden("retain", layer), ctx.ref_hidden("retain", layer),
                                     ctx.labels("retain"))
    return to_c.item(), to_ref.item()


def test_rmu_steers_forget_activations_keeps_retain_and_trains_only_the_selected_tensors(tiny_target, tmp_path):
    """RMU on the 2-layer target (its layer 0), training only layer 0's mlp.down_proj: the forget
    activations move towards c; with the retain term at weight 5 the retain activations stay
    near the reference's (at most half as far as without it, RMU+none); every other tensor is bit-identical to the
    target's, and the saved folder holds every tensor."""
    cfg, target = tiny_target
    cfg = _config(cfg, "unlearn.train.epochs=3", "unlearn.train.batch_size=8", "unlearn.train.lr=1e-2",
                  "unlearn.train.warmup_epochs=0", "unlearn.rmu_coeff=5", "unlearn.reg_coeff=5",
                  r"unlearn.trainable=layers\.0\.mlp\.down_proj")
    out = tmp_path / "rmu"
    manifest = unlearn_model(cfg, "RMU", target, out)
    assert manifest["trainable_tensors"] == 1
    state = load_file(out / METHOD_STATE)
    assert int(state["rmu_layer"]) == 0 and state["rmu_control"].norm().item() == pytest.approx(5.0, rel=1e-5)
    before_c, _ = _distances(target, target, cfg, "RMU", state)
    after_c, after_ref = _distances(out, target, cfg, "RMU", state)
    assert after_c < 0.8 * before_c, (before_c, after_c)
    unlearn_model(cfg, "RMU+none", target, tmp_path / "rmu-alone")
    _, alone_ref = _distances(tmp_path / "rmu-alone", target, cfg, "RMU", state)  # same seed: same c
    assert after_ref < 0.5 * alone_ref, (after_ref, alone_ref)
    unlearned = dict(AutoModelForCausalLM.from_pretrained(out).named_parameters())
    original = dict(AutoModelForCausalLM.from_pretrained(target).named_parameters())
    assert unlearned.keys() == original.keys()
    changed = {n for n in original if not torch.equal(unlearned[n], original[n])}
    assert changed == {"model.layers.0.mlp.down_proj.weight"}


def test_trainable_regex_gives_optimiser_state_only_to_matching_parameters(tiny_target, tmp_path):
    from transformers import Trainer, TrainingArguments

    from unlearnlm.errors import ConfigError
    from unlearnlm.training.unlearn import freeze_except

    _, target = tiny_target
    model = AutoModelForCausalLM.from_pretrained(target)
    assert freeze_except(model, r"mlp\.down_proj") == 2  # one per layer
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none"))
    optimised = [p for group in trainer.create_optimizer().param_groups for p in group["params"]]
    assert len(optimised) == 2 and all(p.requires_grad for p in optimised)
    with pytest.raises(ConfigError, match="matches no parameter"):
        freeze_except(model, "no_such_layer")


def test_pdu_dual_variable_rises_while_the_retain_loss_is_above_eps(tiny_target, tmp_path):
    """eps 0 < retain NLL at every step and no warm-up: lambda rises by eta * L_R > 0 each step."""
    cfg, target = tiny_target
    cfg = _config(cfg, "unlearn.train.epochs=2", "unlearn.train.batch_size=8", "unlearn.train.lr=1e-3",
                  "unlearn.pdu_eps=0", "unlearn.pdu_dual_warmup_epochs=0", "unlearn.pdu_lambda0=1",
                  "unlearn.pdu_eta=0.5")
    out = tmp_path / "pdu"
    manifest = unlearn_model(cfg, "PDU", target, out)
    steps = [h for h in manifest["log_history"] if "dual_lambda" in h]
    assert len(steps) == 10 and steps[0]["dual_lambda"] == 1.0  # 40 QA / batch 8 x 2 epochs
    for prev, cur in zip(steps, steps[1:]):  # the lambda a step used = previous + eta * its retain NLL
        assert cur["dual_lambda"] == pytest.approx(prev["dual_lambda"] + 0.5 * prev["retain_nll"], abs=2e-4)
    assert load_file(out / METHOD_STATE)["pdu_lambda"].item() > steps[-1]["dual_lambda"]


def test_report_to_tensorboard_logs_each_loss_term_beside_the_model(tiny_target, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg, target = tiny_target
    cfg = load_config("demo", [f"model.name={cfg.model.name}", "unlearn.train.report_to=tensorboard",
                               "unlearn.train.epochs=1", "unlearn.train.batch_size=8", "unlearn.train.bf16=false"])
    out = tmp_path / "NPO+GD"
    unlearn_model(cfg, "NPO+GD", target, out)
    (events_dir,) = {p.parent for p in (tmp_path / "NPO+GD.logs").rglob("events.out.tfevents.*")}
    scalars = EventAccumulator(str(events_dir)).Reload().Tags()["scalars"]
    assert {"train/loss", "train/forget_loss", "train/reg_loss"} <= set(scalars)
    assert not (tmp_path / "NPO+GD.checkpoints").exists()  # the logs outlive the checkpoints


def test_report_to_is_checked_and_changes_no_cache_key():
    from unlearnlm.errors import ConfigError
    from unlearnlm.training.finetune import selection_key

    with pytest.raises(ConfigError, match=r"^unlearn\.train\.report_to: unknown integration tensorbord \(known: none"):
        load_config("demo", ["unlearn.train.report_to=tensorbord"])
    assert selection_key(load_config("demo", ["finetune.train.report_to=tensorboard"])) == \
        selection_key(load_config("demo"))


def test_a_finished_model_or_checkpoint_of_another_job_is_refused_not_reused(tmp_path):
    from unlearnlm.errors import ConfigError
    from unlearnlm.training.base import JOB_FILE
    from unlearnlm.training.layout import ModelFolder
    from unlearnlm.training.unlearn import _job

    start = tmp_path / "start"  # a start model that is never loaded
    start.mkdir()
    (start / "config.json").write_text("{}")
    (start / "model.safetensors").write_bytes(b"")
    out = tmp_path / "GA+GD"
    out.mkdir()
    seed0 = load_config("demo")
    job = _job(seed0, resolve_method(seed0.unlearn, "GA+GD"), start, None, ["1"], ["1"])
    folder = ModelFolder(out)
    folder.manifest.write_text(json.dumps({"kind": "unlearned", "seed": 0, "job": job}))
    seed1 = load_config("demo", ["unlearn.train.seed=1"])
    with pytest.raises(ConfigError, match=r"GA\+GD: made by another job \(settings.train.seed: 0 there, 1 now\)"):
        unlearn_model(seed1, "GA+GD", start, out)
    with pytest.raises(ConfigError, match=r"made by another job \(settings.train.lr: 0.0001 there, 0.001 now\)"):
        unlearn_model(load_config("demo", ["unlearn.train.lr=1e-3"]), "GA+GD", start, out)
    # its own job: the finished model is reused as it is, nothing loaded or trained
    assert unlearn_model(seed0, "GA+GD", start, out)["seed"] == 0
    # a folder finished before jobs were recorded is reused
    folder.manifest.write_text(json.dumps({"kind": "unlearned", "seed": 0}))
    assert unlearn_model(seed1, "GA+GD", start, out)["seed"] == 0
    # an interrupted job's checkpoint is not resumed by another job
    folder.manifest.unlink()
    (folder.checkpoints / "checkpoint-2").mkdir(parents=True)
    (folder.checkpoints / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (folder.checkpoints / JOB_FILE).write_text(json.dumps(job))
    with pytest.raises(ConfigError, match=r"GA\+GD.checkpoints: made by another job \(settings.train.seed"):
        unlearn_model(seed1, "GA+GD", start, out)
