#!/bin/bash
# #21 stop 35: r26b = r26's round 2 again from the same r26-r1 and the same DAgger logs, with two task weights changed
# after r26-r2 failed the adoption rule on stack alone (validation: stack 30 vs r23-r2's 50; the five single-step push
# tasks at 92-100): stack x3 (was x2) and the five single-step push tasks x1.5 (was x2.5), which keeps round 2's
# updates and cost. Then the same validation evals. Code frozen at $CODE (main with the padded instruction_words).
set -e
CODE=${CODE:-/work/snap37}
D=/work/main/data/r22; E=/work/main/data/r26; S=/work/main/data/s17; T=/work/main/outputs/train; O=/work/main/outputs/r26
PY=/work/main/.venv/bin/python; TR=/work/main/.venv/bin/torchrun
TASKS="block2block block2absolutelocation block2relativelocation block2block_relative_location separate corner_to_same_color sort_corners side_together all_to_center"
LONG="corner_to_same_color sort_corners side_together"
WEIGHTS='+data.task_weights={side_together:0.24,corner_to_same_color:0.12,sort_corners:0.28,block2block:1.5,block2absolutelocation:1.5,block2relativelocation:1.5,block2block_relative_location:1.5,separate:1.5,stack:3.0,grasp:0.6}'
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
FEATURES="model.state.features=[words,size_word,words_above,words_below,zone_words,board_words,near_words,instruction_words]"
if [ ! -f $T/r26-r1/train_summary.json ]; then
  start=$(date +%s)
  OMP_NUM_THREADS=1 $TR --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny run_name=r26-r1 output_dir=$T/r26-r1 "data.dirs=[$ROUND1]" data.rephrase=8 model.prompt.instruction.in_text=false "$FEATURES" '+data.task_weights={side_together:0.24,corner_to_same_color:0.12,sort_corners:0.28}' train.steps=6000 save_every=500 resume=$([ -d $T/r26-r1/checkpoints ] && echo true || echo false) progress=false >> /work/logs/r26_r1.log 2>&1
  echo "TRAIN r26 r1 $(( $(date +%s) - start )) s"
fi
start=$(date +%s)
for tn in grasp:150 put_in_zone:300 sort_by_color:300 stack:400 unstack:50; do t=${tn%:*}
  collect $E/dagger_pickplace_$t ${tn#*:} env=pickplace task=$t planner=palme checkpoint=$T/r26-r1 keep_failures=true seed_start=100000; done
echo "DAGGER PP $(( $(date +%s) - start )) s"
for tn in block2block:50 block2absolutelocation:50 block2relativelocation:100 block2block_relative_location:50 separate:30 corner_to_same_color:150 sort_corners:200 side_together:200 all_to_center:200; do t=${tn%:*}
  collect $E/dagger_push_$t ${tn#*:} env=push task=$t planner=palme checkpoint=$T/r26-r1 keep_failures=true seed_start=300000; done
for t in $LONG; do collect $E/dagger8_push_$t 100 env=push task=$t block_set=BLOCK_8 planner=palme checkpoint=$T/r26-r1 keep_failures=true seed_start=300000; done
echo "DAGGER $(( $(date +%s) - start )) s"
DAG=$(for t in grasp put_in_zone sort_by_color stack unstack; do printf "%s," $E/dagger_pickplace_$t; done; for t in $TASKS; do printf "%s," $E/dagger_push_$t; done; for t in $LONG; do printf "%s," $E/dagger8_push_$t; done)
if [ ! -f $T/r26b-r2/train_summary.json ]; then
  start=$(date +%s)
  OMP_NUM_THREADS=1 $TR --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny_dagger resume=$([ -d $T/r26b-r2/checkpoints ] && echo true || echo false) run_name=r26b-r2 output_dir=$T/r26b-r2 init_from=$T/r26-r1 "data.dirs=[$ROUND1,${DAG%,}]" data.rephrase=8 "$WEIGHTS" train.steps=3000 save_every=500 progress=false >> /work/logs/r26b_r2.log 2>&1
  echo "TRAIN r2 $(( $(date +%s) - start )) s"
fi
M=r26b-r2; start=$(date +%s)
$PY results/palme_tiny_recipe/shape_probe.py $T/$M $S/eval_block2block
$PY -m agent.evaluate checkpoint=$T/$M env=pickplace episodes=40 seed_offset=400000 workers=2 image_size=[64,64] progress=false hydra.run.dir=$O/val_pp_$M > /work/logs/r26b_val_pp_$M.txt 2>&1
$PY -m agent.evaluate checkpoint=$T/$M env=push "tasks=[$(echo $TASKS | tr ' ' ,)]" episodes=50 seed_offset=400000 workers=2 image_size=[64,64] progress=false hydra.run.dir=$O/val_push_$M > /work/logs/r26b_val_push_$M.txt 2>&1
$PY -m agent.evaluate checkpoint=$T/$M env=push block_set=BLOCK_8 "tasks=[$(echo $LONG | tr ' ' ,)]" episodes=30 seed_offset=400000 workers=2 image_size=[64,64] progress=false hydra.run.dir=$O/val_push8_$M > /work/logs/r26b_val_push8_$M.txt 2>&1
$PY benchmarks/reference_forms.py $O/val_push_$M/episodes.jsonl
echo "VAL $M $(( $(date +%s) - start )) s"
echo "R26B DONE"
