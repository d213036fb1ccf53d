#!/usr/bin/env bash
# Rerun every study of docs/results.md (issues 8, 15, 16 and 18), then write its tables and report figures.
#   bash scripts/reproduce.sh            # runs/ and docs/results/tables.md
#   bash scripts/reproduce.sh evidence   # issue 17's study alone (experiments/runs/)
# Resumable: after an interruption, the same command reuses every finished model and evaluation.
# The studies run in two lanes of one CPU thread each (about 1.2x the throughput of one
# two-thread job on 2 cores); LANES=1 runs them one after another. Times: docs/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p runs/logs
study() {  # study LOG_NAME ARGS...: one `unlearnlm run`, its log kept under runs/logs
  local name=$1; shift
  echo "[$(date +%T)] start $name"
  .venv/bin/unlearnlm run "$@" > "runs/logs/$name.log" 2>&1 || { echo "$name failed: see runs/logs/$name.log"; return 1; }
  echo "[$(date +%T)] done $name"
}
lane_a() {
  study grid-lr1e-4 --preset experiments/grid.yaml unlearn.train.lr=1e-4 run_name=grid-lr1e-4
  study gemma --preset experiments/gemma.yaml
  study grid-lr5e-5 --preset experiments/grid.yaml unlearn.train.lr=5e-5 run_name=grid-lr5e-5
  study demo --preset demo run_name=demo2
}
lane_b() {
  study continual --preset experiments/continual.yaml
  study real_world --preset experiments/real_world.yaml
  # the lr 1e-4 grid again under a second unlearning seed (data order): how much is noise
  study grid-lr1e-4-seed1 --preset experiments/grid.yaml unlearn.train.lr=1e-4 unlearn.train.seed=1 \
    run_name=grid-lr1e-4-seed1
  # issue 15: the baselines whose defaults barely move the 135M target, one more setting each
  study sweep-simnpo-fc1 --preset experiments/grid.yaml unlearn.train.lr=1e-4 run_name=sweep-simnpo-fc1 \
    "methods=[SimNPO+GD]" unlearn.per_method.SimNPO+GD.forget_coeff=1.0
  study sweep-rmu-lr1e-3 --preset experiments/grid.yaml unlearn.train.lr=1e-4 run_name=sweep-rmu-lr1e-3 \
    "methods=[RMU]" unlearn.per_method.RMU.lr=1e-3
  study sweep-rmu-lr1e-2 --preset experiments/grid.yaml unlearn.train.lr=1e-4 run_name=sweep-rmu-lr1e-2 \
    "methods=[RMU]" unlearn.per_method.RMU.lr=1e-2
  for fc in 1 10; do
    study sweep-satimp-fc$fc --preset experiments/grid.yaml unlearn.train.lr=1e-4 run_name=sweep-satimp-fc$fc \
      "methods=[SatImp+GD]" unlearn.per_method.SatImp+GD.forget_coeff=$fc.0
  done
}
seed_models() {  # seed_models FROM TO METHOD...: reuse FROM's finished models in run TO (hard links)
  local from=$1 to=$2; shift 2
  mkdir -p "runs/$to/models"
  for m in "$@"; do  # a model FROM lacks is trained by the study itself
    [ -e "runs/$from/models/$m" ] || continue
    [ -e "runs/$to/models/$m" ] || cp -al "runs/$from/models/$m" "runs/$to/models/$m" 2>/dev/null \
      || cp -a "runs/$from/models/$m" "runs/$to/models/$m"
  done
}
privacy() {  # issue 16: privacy and memorisation metrics of the selected runs, fresh evaluations of their models
  # Each method at its selected learning rate (docs/results.md, section 1).
  local grid=(--preset experiments/grid.yaml)
  local at_1e4=(GA GA+KL NPO NPO+KL DPO+KL ME ME+KL SimNPO+GD RMU UNDIAL+GD WGA+GD SatImp+GD CEU+GD)
  local at_5e5=(DPO+GD IDK+GD IDK+KL PDU)
  seed_models demo2 privacy-lr1e-4 GA+GD NPO+GD ME+GD IDK+AP  # the demo's four = the grid's lr 1e-4 runs
  seed_models grid-lr1e-4 privacy-lr1e-4 "${at_1e4[@]}"
  study privacy-lr1e-4 "${grid[@]}" unlearn.train.lr=1e-4 run_name=privacy-lr1e-4 \
    "methods=[$(IFS=,; echo "GA+GD,NPO+GD,ME+GD,IDK+AP,${at_1e4[*]}")]"
  seed_models grid-lr5e-5 privacy-lr5e-5 "${at_5e5[@]}"
  study privacy-lr5e-5 "${grid[@]}" unlearn.train.lr=5e-5 run_name=privacy-lr5e-5 "methods=[$(IFS=,; echo "${at_5e5[*]}")]"
  seed_models sweep-rmu-lr1e-2 privacy-rmu-lr1e-2 RMU
  study privacy-rmu-lr1e-2 "${grid[@]}" unlearn.train.lr=1e-4 run_name=privacy-rmu-lr1e-2 "methods=[RMU]" \
    unlearn.per_method.RMU.lr=1e-2
  seed_models sweep-simnpo-fc1 privacy-simnpo-fc1 SimNPO+GD
  study privacy-simnpo-fc1 "${grid[@]}" unlearn.train.lr=1e-4 run_name=privacy-simnpo-fc1 "methods=[SimNPO+GD]" \
    unlearn.per_method.SimNPO+GD.forget_coeff=1.0
}
seed_evals() {  # seed_evals FROM TO LABEL...: reuse FROM's evaluations (and attacks) of these labels in TO
  local from=$1 to=$2; shift 2
  for m in "$@"; do
    for kind in eval attacks; do
      [ -e "runs/$from/$kind/$m" ] && [ ! -e "runs/$to/$kind/$m" ] || continue
      mkdir -p "runs/$to/$kind"
      cp -al "runs/$from/$kind/$m" "runs/$to/$kind/$m" 2>/dev/null || cp -a "runs/$from/$kind/$m" "runs/$to/$kind/$m"
    done
  done
}
attacks() {  # issue 18: every attack on the selected runs of seven methods, one run (models and evaluations reused)
  local seven="methods=[GA+GD,NPO+GD,ME+GD,IDK+AP,SimNPO+GD,RMU,DPO+GD]"
  # cheap and telling first: an interrupted study has every model under the first attacks
  local all="eval.attacks=[quant4,relearn,paraphrase,fewshot,relearn_retain,quant8,system_prompt]"
  local four=(GA+GD NPO+GD ME+GD IDK+AP)
  for pair in privacy-lr1e-4:GA+GD privacy-lr1e-4:NPO+GD privacy-lr1e-4:ME+GD privacy-lr1e-4:IDK+AP \
              privacy-simnpo-fc1:SimNPO+GD privacy-rmu-lr1e-2:RMU privacy-lr5e-5:DPO+GD; do
    seed_models "${pair%%:*}" attacks "${pair#*:}"
    seed_evals "${pair%%:*}" attacks "${pair#*:}"
  done
  # each method at its selected setting (docs/results.md, sections 1 and 1b)
  study attacks --preset experiments/grid.yaml unlearn.train.lr=1e-4 run_name=attacks "$seven" "$all" \
    unlearn.per_method.SimNPO+GD.forget_coeff=1.0 unlearn.per_method.RMU.lr=1e-2 unlearn.per_method.DPO+GD.lr=5e-5
}
# Issue 17: three seeds, 100 examples per utility set; then forget05 for four methods. One
# job of two threads after the other, always: a model's weights depend on the thread count, and
# these run directories are committed under experiments/runs without their models, so that a
# study spread over several sessions resumes from its finished evaluations on a fresh machine
# (the run refuses to resume if the refitted target's weights differ). Every method at seed 0
# comes before seed 1, so each session's share is a complete comparison.
RECORDS=${RECORDS:-experiments/runs}
evidence() {
  OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 study evidence --preset experiments/evidence.yaml output_dir=$RECORDS
  OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 study evidence-forget05 --preset experiments/evidence_forget05.yaml \
    output_dir=$RECORDS
}
if [ "${1:-all}" = evidence ]; then  # bash scripts/reproduce.sh evidence: that study alone, then the tables
  evidence
  .venv/bin/python experiments/summarise.py --evidence-only --records $RECORDS > docs/results/evidence.md
  exit
fi
if [ "${LANES:-2}" = 1 ]; then
  lane_a && lane_b
else
  export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
  lane_a & a=$!
  lane_b & b=$!
  wait $a && wait $b
fi
OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 privacy
OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 attacks
evidence
.venv/bin/unlearnlm report runs/grid-lr1e-4 runs/grid-lr5e-5 --out runs/grid-report > /dev/null
for run in grid-lr1e-4 grid-lr5e-5 grid-lr1e-4-seed1 continual gemma real_world demo2; do
  .venv/bin/unlearnlm report "runs/$run" > /dev/null
done
mkdir -p docs/img
for run in grid-lr1e-4 real_world; do cp "runs/$run/figures/mu_fe.png" "docs/img/${run}_mu_fe.png"; done
cp runs/grid-report/figures/mu_fe.png docs/img/grid_sweep_mu_fe.png
cp runs/continual/figures/continual.png docs/img/continual.png
.venv/bin/unlearnlm report runs/grid-lr1e-4 runs/grid-lr5e-5 runs/sweep-rmu-lr1e-2 runs/sweep-satimp-fc10 \
  runs/sweep-simnpo-fc1 --out runs/baselines-report
cp runs/baselines-report/figures/mu_fe.png docs/img/baselines_mu_fe.png
.venv/bin/unlearnlm report runs/privacy-lr1e-4 runs/privacy-lr5e-5 runs/privacy-rmu-lr1e-2 runs/privacy-simnpo-fc1 \
  --out runs/privacy-report > /dev/null
cp runs/privacy-report/figures/privleak_fe.png docs/img/privleak_fe.png
.venv/bin/python experiments/summarise.py runs --records $RECORDS > docs/results/tables.md
echo "tables: docs/results/tables.md; reports: runs/*/report.html"
