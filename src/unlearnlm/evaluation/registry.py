"""The metric registry: a metric is one registration (docs/method.md, section 7).

    @metric("rouge", "ROUGE-L recall of the greedy generation against the ground truth",
            needs={"generation"}, enters={"MU", "FE", "TOFU_MU"}, title="ROUGE-L recall", short="R")
    def rouge(ex: Example) -> float: ...

    [m.name for m in metrics_for("holdout", "tofu")]   # what runs on a holdout set

A registration names what the metric needs per example (the stages of ``evaluation/stages.py``),
its per-example score, the set kinds it is computed on, its direction and the aggregates it
enters. The set score is the mean of the per-example scores; metrics in "MIA" also get the ROC
AUC of forget set (members) against holdout set (non-members) in ``aggregates.py``.
``score_set`` runs only the stages the requested metrics need, each once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from unlearnlm.evaluation import metrics as m
from unlearnlm.evaluation import privacy as p
from unlearnlm.evaluation.sets import FAMILIES, EvalSet
from unlearnlm.registry import Registry

STAGES = ("generation", "likelihood", "embedding", "nli", "token_stats", "gradients")
# Stages whose outputs only the metrics use (no record field of another stage depends on them):
# a stored set gains metrics that need only these without recomputing its generations.
ADDABLE_STAGES = frozenset({"token_stats", "gradients"})
PAPER_KINDS = frozenset({"forget", "utility"})


@dataclass
class Example:
    """Everything the stages computed for one evaluation example (None where not run)."""

    row: dict
    spec: EvalSet
    generation: str | None = None
    generated_ids: list[int] | None = None
    nll_answer: float | None = None
    nll_base: float | None = None
    nll_perturbed: list[float] | None = None
    embeddings: tuple[Any, Any] | None = None  # (generation, cosine reference)
    entailed: bool | None = None
    tokens: dict | None = None  # answer_token_stats: logp, mu, sigma, hit (EOS last)
    grad_norm: float | None = None
    cache: dict = field(default_factory=dict)

    @property
    def truth(self) -> str:
        return self.row[self.spec.truth_key]

    @property
    def member_answer(self) -> str:
        """The answer a model was trained on (real-world: the original model's own answer)."""
        return self.row["answer"]


@dataclass(frozen=True)
class Metric:
    name: str
    score: Callable[[Example], float | None]
    needs: frozenset[str]
    kinds: frozenset[str] = PAPER_KINDS  # set kinds it is computed on
    higher_is_better: bool = True  # as a score of retained knowledge; on forget, lower = forgotten
    enters: frozenset[str] = frozenset()  # aggregates: MU, FE, TOFU_MU, MIA
    families: frozenset[str] = frozenset(FAMILIES)
    title: str = ""  # report name ("ROUGE-L recall"); empty: the metric's name
    short: str = ""  # per-set table header ("R"); empty: not shown in the per-set tables


METRICS: Registry[Metric] = Registry("metric")


def metric(name: str, doc: str, needs: Iterable[str], kinds: Iterable[str] = PAPER_KINDS,
           higher_is_better: bool = True, enters: Iterable[str] = (), families: Iterable[str] = FAMILIES,
           title: str = "", short: str | None = None):
    """Register the decorated per-example score as metric ``name`` (one line of doc). ``short``:
    its per-set table header (default: its name; "" hides it there)."""
    unknown = set(needs) - set(STAGES)
    if unknown:
        raise ValueError(f"metric {name!r}: unknown stage(s) {', '.join(sorted(unknown))}; stages: {', '.join(STAGES)}")

    def register(score: Callable[[Example], float | None]):
        METRICS.add(name, Metric(name, score, frozenset(needs), frozenset(kinds), higher_is_better,
                                 frozenset(enters), frozenset(families), title or name,
                                 name if short is None else short), doc)
        return score

    return register


def metrics_for(kind: str, family: str, selected: Iterable[str] | None = None) -> list[Metric]:
    """The registered metrics computed on a set of ``kind`` in ``family`` (``selected``: only those)."""
    wanted = None if selected is None else set(selected)
    return [e.obj for e in METRICS
            if kind in e.obj.kinds and family in e.obj.families and (wanted is None or e.name in wanted)]


def entering(aggregate: str) -> list[str]:
    """Names of the metrics that enter ``aggregate`` (MU, FE, TOFU_MU, MIA), in registry order."""
    return [e.name for e in METRICS if aggregate in e.obj.enters]


# ------------------------------------------------------------ the paper's six output metrics
def _rouge(ex: Example) -> float:
    if "rouge" not in ex.cache:
        ex.cache["rouge"] = m.rouge_l_recall(ex.generation, ex.truth)
    return ex.cache["rouge"]


@metric("rouge", "ROUGE-L recall of the greedy generation against the ground truth",
        needs={"generation"}, enters={"MU", "FE", "TOFU_MU"}, title="ROUGE-L recall", short="R")
def rouge(ex: Example) -> float:
    return _rouge(ex)


@metric("probability", "exp(-mean NLL) of the answer (normalized on real authors/world facts)",
        needs={"likelihood"}, enters={"MU", "FE", "TOFU_MU"}, title="Probability", short="P")
def probability(ex: Example) -> float:
    if ex.spec.probability_form == "normalized":
        return m.normalized_probability(ex.nll_answer, ex.nll_perturbed)
    return m.probability(ex.nll_answer)


@metric("truth_ratio", "perturbed vs base answer likelihood ratio (forget / non-forget form)",
        needs={"likelihood"}, enters={"MU", "FE", "TOFU_MU"}, title="Truth ratio", short="TR")
def truth_ratio(ex: Example) -> float:
    return m.truth_ratio_score(m.truth_ratio_raw(ex.nll_base, ex.nll_perturbed), ex.spec.is_forget)


@metric("token_entropy", "unigram entropy of the generation's tokens over log2(n)",
        needs={"generation"}, enters={"MU"}, title="Token entropy", short="TE")
def token_entropy(ex: Example) -> float:
    return m.token_entropy(ex.generated_ids)


@metric("cosine_similarity", "max(0, cosine) of generation and reference embeddings",
        needs={"generation", "embedding"}, enters={"MU", "FE"}, title="Cosine similarity", short="CS")
def cosine_similarity(ex: Example) -> float:
    return m.cosine_score(*ex.embeddings)


@metric("entailment", "1 if the NLI label is entailment and ROUGE-L >= 0.1",
        needs={"generation", "nli"}, enters={"MU", "FE"}, title="Entailment score", short="ES")
def entailment(ex: Example) -> float:
    return m.entailment_score(bool(ex.entailed), _rouge(ex))


# ------------------------------------------------- membership inference (lower = member-like)
MIA_KINDS = frozenset({"forget", "holdout"})


def _logp(ex: Example) -> list[float]:
    return ex.tokens["logp"]


def _membership_score(name: str, description: str, title: str, needs: frozenset[str] = frozenset({"token_stats"})):
    """A membership-inference score: forget and holdout sets, lower = more member-like, enters MIA."""
    return metric(name, description, needs=set(needs), kinds=MIA_KINDS, higher_is_better=False, enters={"MIA"},
                  title=title, short="")


def _answer_hits(ex: Example) -> list[bool]:
    return ex.tokens["hit"][:-1] or ex.tokens["hit"]  # EOS excluded (kept if it is the only token)


@_membership_score("mia_loss", "LOSS attack: mean answer NLL (lower = more member-like)", "MIA LOSS")
def mia_loss(ex: Example) -> float:
    return p.loss_score(_logp(ex))


@_membership_score("mia_zlib", "ZLib attack: mean answer NLL / zlib-compressed answer length", "MIA ZLib")
def mia_zlib(ex: Example) -> float:
    return p.zlib_score(_logp(ex), ex.member_answer)


@_membership_score("mia_min_k", "Min-K% attack: -mean of the lowest 40% answer-token log-probs", "MIA Min-K%")
def mia_min_k(ex: Example) -> float:
    return p.min_k_score(_logp(ex))


@_membership_score("mia_min_k_plus_plus", "Min-K%++ attack: -mean of the lowest 40% standardised log-probs", "MIA Min-K%++")
def mia_min_k_plus_plus(ex: Example) -> float:
    return p.min_k_plus_plus_score(_logp(ex), ex.tokens["mu"], ex.tokens["sigma"])


@_membership_score("mia_gradnorm", "GradNorm attack: mean over parameter tensors of the answer-NLL gradient norm",
         "MIA GradNorm", needs=frozenset({"gradients"}))
def mia_gradnorm(ex: Example) -> float:
    return ex.grad_norm


# ------------------------------------------------------------------------ memorisation
@metric("exact_memorisation", "fraction of answer tokens that are the teacher-forced argmax",
        needs={"token_stats"}, kinds={"forget"}, title="Exact memorisation", short="EM")
def exact_memorisation(ex: Example) -> float:
    return p.exact_memorisation(_answer_hits(ex))


@metric("extraction_strength", "1 - k*/T: the shortest prefix after which the answer is the argmax",
        needs={"token_stats"}, kinds={"forget"}, title="Extraction strength", short="XS")
def extraction_strength(ex: Example) -> float:
    return p.extraction_strength(_answer_hits(ex))
