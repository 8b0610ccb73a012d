#!/bin/bash
# #21 stop 35: r23's whole two-round recipe (same data, counts, seeds, task weights and updates) with the
# instruction_words object feature added to the model from the start. Probe r25-iw (r25_iw_probe.sh: the feature added
# to the shipped model, then r24-ss's 1,000 updates) took teacher-forced first steps with a shape-only block name
# ("the pentagon") on the 150 held-out block2block scenes from 15 of 37 (r24-ss, the same updates without it) to 24 of
# 37. Round 1, DAgger logs of round 1 in both worlds, round 2, then validation evals only (seed_offset 400000) and the
# shape probe. Code frozen at $CODE. Re-running continues (finished steps skip). Round 2 again with other task
# weights: M2=<run name> WEIGHTS=<override> (r26b_round2.sh). The same recipe for another model: NAME=<prefix> (runs
# NAME-r1 and NAME-r2, DAgger logs in data/NAME), FEATURES=<round 1's state.features override> and MODEL=<more round-1
# model overrides> (r28_chain.sh); ROUND1_ONLY=1 stops after round 1.
set -e
CODE=${CODE:-/work/snap36}; NAME=${NAME:-r26}; MODEL=${MODEL:-}
D=/work/main/data/r22; E=/work/main/data/$NAME; S=/work/main/data/s17; T=/work/main/outputs/train; O=/work/main/outputs/$NAME
PY=/work/main/.venv/bin/python; TR=/work/main/.venv/bin/torchrun
TASKS="block2block block2absolutelocation block2relativelocation block2block_relative_location separate corner_to_same_color sort_corners side_together all_to_center"
LONG="corner_to_same_color sort_corners side_together"
WEIGHTS=${WEIGHTS:-'+data.task_weights={side_together:0.24,corner_to_same_color:0.12,sort_corners:0.28,block2block:2.5,block2absolutelocation:2.5,block2relativelocation:2.5,block2block_relative_location:2.5,separate:2.5,stack:2.0,grasp:0.6}'}
M2=${M2:-$NAME-r2}
have() { $PY -c "import json,sys; print(json.load(open(sys.argv[1]))['total_episodes'])" $1/meta/info.json 2>/dev/null || echo 0; }
collect() {  # out want [palme-collect overrides...]: top the folder up to `want` episodes
  local out=$1 want=$2; shift 2; local h; h=$(have $out); [ "$h" -ge "$want" ] && return 0
  $PY -m training.collect episodes=$((want - h)) workers=2 image_size=[64,64] out=$out hydra.run.dir=$O/collect/${out##*/} progress=false "$@" 2>&1 | tail -1 | cut -c1-200
}
cd $CODE
PP=$(for t in grasp put_in_zone sort_by_color stack unstack; do printf "%s," $D/pickplace_$t; done)
PUSH="$S/push_block2block,$S/push_block2absolutelocation,$S/push_block2relativelocation,$S/push_block2block_relative_location,$S/push_separate,$S/push_sort_corners,$S/push_all_to_center,$S/push_corner_to_same_color_3k,$S/push_side_together_3k"
PUSH8=$(for t in $LONG; do printf "%s," $D/push8_$t; done)
ROUND1="$PP$PUSH,${PUSH8%,}"
FEATURES=${FEATURES:-"model.state.features=[words,size_word,words_above,words_below,zone_words,board_words,near_words,instruction_words]"}
M1=$NAME-r1
if [ ! -f $T/$M1/train_summary.json ]; then
  start=$(date +%s)
  OMP_NUM_THREADS=1 $TR --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny run_name=$M1 output_dir=$T/$M1 "data.dirs=[$ROUND1]" data.rephrase=8 model.prompt.instruction.in_text=false "$FEATURES" $MODEL '+data.task_weights={side_together:0.24,corner_to_same_color:0.12,sort_corners:0.28}' train.steps=6000 save_every=500 resume=$([ -d $T/$M1/checkpoints ] && echo true || echo false) progress=false >> /work/logs/${M1/-/_}.log 2>&1
  echo "TRAIN $M1 $(( $(date +%s) - start )) s"
fi
[ -n "${ROUND1_ONLY:-}" ] && { echo "$NAME ROUND 1 ONLY"; exit 0; }
start=$(date +%s)
for tn in grasp:150 put_in_zone:300 sort_by_color:300 stack:400 unstack:50; do t=${tn%:*}
  collect $E/dagger_pickplace_$t ${tn#*:} env=pickplace task=$t planner=palme checkpoint=$T/$M1 keep_failures=true seed_start=100000; done
echo "DAGGER PP $(( $(date +%s) - start )) s"
for tn in block2block:50 block2absolutelocation:50 block2relativelocation:100 block2block_relative_location:50 separate:30 corner_to_same_color:150 sort_corners:200 side_together:200 all_to_center:200; do t=${tn%:*}
  collect $E/dagger_push_$t ${tn#*:} env=push task=$t planner=palme checkpoint=$T/$M1 keep_failures=true seed_start=300000; done
for t in $LONG; do collect $E/dagger8_push_$t 100 env=push task=$t block_set=BLOCK_8 planner=palme checkpoint=$T/$M1 keep_failures=true seed_start=300000; done
echo "DAGGER $(( $(date +%s) - start )) s"
DAG=$(for t in grasp put_in_zone sort_by_color stack unstack; do printf "%s," $E/dagger_pickplace_$t; done; for t in $TASKS; do printf "%s," $E/dagger_push_$t; done; for t in $LONG; do printf "%s," $E/dagger8_push_$t; done)
if [ ! -f $T/$M2/train_summary.json ]; then
  start=$(date +%s)
  OMP_NUM_THREADS=1 $TR --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny_dagger resume=$([ -d $T/$M2/checkpoints ] && echo true || echo false) run_name=$M2 output_dir=$T/$M2 init_from=$T/$M1 "data.dirs=[$ROUND1,${DAG%,}]" data.rephrase=8 "$WEIGHTS" train.steps=3000 save_every=500 progress=false >> /work/logs/${M2/-/_}.log 2>&1
  echo "TRAIN r2 $(( $(date +%s) - start )) s"
fi
M=$M2; start=$(date +%s)
$PY results/palme_tiny_recipe/shape_probe.py $T/$M $S/eval_block2block
$PY -m agent.evaluate checkpoint=$T/$M env=pickplace episodes=40 seed_offset=400000 workers=2 image_size=[64,64] progress=false hydra.run.dir=$O/val_pp_$M > /work/logs/${NAME}_val_pp_$M.txt 2>&1
$PY -m agent.evaluate checkpoint=$T/$M env=push "tasks=[$(echo $TASKS | tr ' ' ,)]" episodes=50 seed_offset=400000 workers=2 image_size=[64,64] progress=false hydra.run.dir=$O/val_push_$M > /work/logs/${NAME}_val_push_$M.txt 2>&1
$PY -m agent.evaluate checkpoint=$T/$M env=push block_set=BLOCK_8 "tasks=[$(echo $LONG | tr ' ' ,)]" episodes=30 seed_offset=400000 workers=2 image_size=[64,64] progress=false hydra.run.dir=$O/val_push8_$M > /work/logs/${NAME}_val_push8_$M.txt 2>&1
$PY benchmarks/reference_forms.py $O/val_push_$M/episodes.jsonl
echo "VAL $M $(( $(date +%s) - start )) s"
echo "$NAME DONE"
