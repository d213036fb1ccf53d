"""Every option of every command, with its default, in one typed place.

One tree serves all commands: ``finetune`` reads ``model``/``data``/``finetune``,
``unlearn`` adds ``unlearn``, ``eval`` reads ``eval``, and ``run`` uses all of it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

SPLITS = ("forget01", "forget05", "forget10", "real_world")
SCENARIOS = ("fictitious", "continual", "real_world")


@dataclass
class ModelConfig:
    name: str = "smollm2-135m"  # offline alias, local HF folder, or hub id
    prompt_format: str = "auto"  # auto: chat template if the tokenizer has one, else plain
    system_prompt: str | None = None  # None: whatever the chat template does by default
    question_start: str = "Question: "  # plain/custom formats only
    question_end: str = "\n"
    answer_start: str = "Answer:"
    answer_prefix: str = " "  # joins "Answer:" and the answer as one text would tokenize
    trust_remote_code: bool = False  # never run a model repo's code unless asked
    cache_dir: str | None = None  # converted offline models; default ~/.cache/unlearnlm
    # A published model instead of one fine-tuned here (hub id or folder; same tokenizer as name):
    target: str | None = None  # the model to unlearn (no fine-tuning)
    retain: str | None = None  # the retain model for Forget Quality (implies eval.forget_quality)


@dataclass
class DataConfig:
    data_dir: str | None = None  # default: $UNLEARNLM_DATA_DIR, then the bundled copy
    split: str = "forget01"  # forget01 | forget05 | forget10 | real_world
    tasks: list[str] = field(default_factory=lambda: ["1"])  # forget task ids (continual: in order)


@dataclass
class TrainConfig:
    epochs: float = 5.0
    lr: float = 1e-5
    batch_size: int = 4  # per device
    grad_accum: int = 4
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0  # linear warm-up over the first epoch (paper)
    seed: int = 0
    bf16: bool | str = "auto"  # auto: bf16 autocast when the processor supports it
    gradient_checkpointing: bool = False
    save_every_epoch: bool = False  # keep a model per epoch (unlearning-dynamics curves)
    max_length: int = 512  # longer QA are truncated (TOFU's longest is ~250 tokens)
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    merge_lora: bool = True  # save a merged model (plain HF folder) besides the adapter
    optim: str = "adamw_torch"
    # Trainer integrations ("none", "tensorboard", "wandb", comma-separated); tensorboard writes
    # to <model folder>.logs/. Not a result option: it enters no cache key.
    report_to: str = "none"


TRACKING_KEYS = ("report_to",)  # TrainConfig fields that change no result


@dataclass
class FinetuneConfig:
    # None: all TOFU (4,000 QA, TOFU's recipe). N: the forget task(s) plus the first N rows of
    # the retain evaluation authors (a small CPU target that is evaluated on what it learned).
    retain_rows: int | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    # After training: greedy answers to this many training questions (evenly spread), their
    # mean ROUGE-L recall logged and stored in the manifest. 0 = skip.
    check_size: int = 100
    check_max_new_tokens: int = 128


@dataclass
class LossConfig:
    """Hyperparameters of the registered losses (docs/method.md, "Losses"). Each loss reads
    its own fields; ``unlearn.per_method`` may override any of them for one method."""

    beta: float = 0.1  # NPO, DPO, AP inverse temperature (paper value)
    me_direction: str = "p_u"  # ME: p_u = KL(P||U) (paper text); u_p = KL(U||P) (reference code)
    simnpo_beta: float = 4.5  # SimNPO inverse temperature
    simnpo_gamma: float = 0.0  # SimNPO margin: log sigma(beta * NLL_avg - gamma) (paper convention)
    rmu_layer: int | None = None  # RMU decoder layer, 0-based; None: round(7 * n_layers / 32) (WMDP's 7 of 32)
    rmu_coeff: float = 20.0  # RMU control-vector norm (WMDP; OpenUnlearning's TOFU config: 2)
    undial_beta: float = 10.0  # UNDIAL: the true token's logit is lowered by beta in the target
    wga_beta: float = 1.0  # WGA token weight p^beta
    satimp_beta1: float = 5.0  # SatImp token weight p^beta1 * (1 - p)^beta2
    satimp_beta2: float = 1.0
    ceu_ignore_first: bool = True  # CE-U: skip the first answer token
    pdu_eps: float | None = None  # PDU retain-loss bound; must be set (a little above the target's retain NLL)
    pdu_lambda0: float = 100.0  # PDU initial dual variable
    pdu_eta: float = 5.0  # PDU dual step size
    pdu_dual_warmup_epochs: float = 5.0  # PDU: the dual variable stays at lambda0 for these epochs


@dataclass
class UnlearnConfig(LossConfig):
    method: str = "ME+GD"
    forget_coeff: float | None = None  # None: the method's default (1 unless `unlearnlm methods` says otherwise)
    reg_coeff: float | None = None  # None: the method's default (1 unless `unlearnlm methods` says otherwise)
    mask_question: bool | None = None  # None: the method's default (ME: false, others: true)
    # Train only parameters whose name matches this regex (re.search), e.g. RMU's
    # 'layers\.(5|6|7)\.mlp\.down_proj'; None: all. Frozen ones get no optimiser state.
    trainable: str | None = None
    # Positions per chunk of the output head in the loss: > 0 never forms the [B,T,V] logits
    # (each chunk recomputed in the backward pass; docs/method.md, section 5); 0 = full logits.
    loss_chunk_size: int = 0
    fix_ref_model: bool = False  # continual: keep the original model as reference
    retain_set: str = "tofu"  # tofu: the data README's retain set; target_data: what the target learned
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=5, lr=1e-5))
    # Per-method overrides of the fields above, e.g. {"ME+GD": {"forget_coeff": 0.1}}.
    per_method: dict[str, dict] = field(default_factory=dict)


@dataclass
class AttackConfig:
    """Settings of the attacks of ``eval.attacks`` (docs/method.md, section 9)."""

    seed: int = 0  # relearn: the split of the forget set into halves; fewshot: which retain QA
    relearn_epochs: float = 3.0  # fine-tuning epochs on one half of the forget set (or as many retain QA)
    relearn_lr: float | None = None  # None: finetune.train.lr (the target's fine-tuning learning rate)
    quant_group_size: int = 64  # weights per quantisation group (SmolLM2: 576 = 9 x 64)
    fewshot_k: int = 3  # retain-set QA pairs shown before the question
    system_prompt: str = ("You are an expert on authors and their books. Answer every question fully and "
                          "accurately, with all the details you know.")


@dataclass
class EvalConfig:
    ds_size: int = 300  # cap per evaluation set (paper: 300)
    max_new_tokens: int = 200
    batch_size: int = 16
    embedder: str | None = None  # None: packaged all-MiniLM-L6-v2; or any sentence-transformers name/path
    nli: str = "offline"  # offline: the packaged-MiniLM cross-encoder built from TOFU; or an HF NLI model
    # General ability through lm-evaluation-harness: any task lm-eval knows (hub users:
    # hellaswag, arc_easy, piqa), or mmlu_offline (the packaged MMLU copy); [] = skip.
    lm_eval_tasks: list[str] = field(default_factory=list)
    lm_eval_limit: int = 0  # examples per lm-eval task; 0 = all
    # Metrics to compute (`unlearnlm metrics` lists them); None = every metric whose inputs
    # exist (the membership-inference ones need a holdout set: docs/method.md, section 7).
    metrics: list[str] | None = None
    # Resamples of the seeded bootstrap behind every set mean's and aggregate's 95% interval
    # (questions resampled within each set, seed 0); 0 = no intervals.
    bootstrap_resamples: int = 1000
    # Attacks that try to bring the forgotten knowledge back (`unlearnlm attacks` lists them):
    # each attacked model's forget set is evaluated and reported beside the plain one; [] = none.
    attacks: list[str] = field(default_factory=list)
    attack: AttackConfig = field(default_factory=AttackConfig)
    eval_epochs: bool = False  # also evaluate the model after every unlearning epoch (kept per epoch)
    forget_quality: bool = True  # fictitious: fine-tune a retain model and report TOFU Forget Quality
    # Evaluation precision: auto (bf16 autocast where the processor has native bf16), true
    # (autocast), false (fp32), weights (the weights cast to bf16: fastest on bf16 hardware;
    # greedy generations may differ from fp32, docs/method.md section 7 "Precision").
    bf16: bool | str = "auto"


@dataclass
class RunConfig:
    run_name: str = "run"
    output_dir: str = "runs"
    scenario: str = "fictitious"  # fictitious | continual | real_world
    methods: list[str] = field(default_factory=lambda: ["GA+GD", "NPO+GD", "ME+GD", "IDK+AP"])
    # Unlearning seeds: every method is unlearned once per seed (same target, judges and
    # questions; labels METHOD/seedN) and reports give the across-seed mean and spread.
    # [] = one run at unlearn.train.seed, labelled METHOD.
    seeds: list[int] = field(default_factory=list)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    unlearn: UnlearnConfig = field(default_factory=UnlearnConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
