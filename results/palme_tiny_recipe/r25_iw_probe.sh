#!/bin/bash
# #21 stop 35: r24-ss's probe (below) with the instruction_words object feature added to the shipped model first
# (results/palme_tiny_recipe/add_feature.py; zero-initialised, so it starts as r23-r2). Was: does a larger share of the planning draws for the five single-step push tasks teach blocks named
# by shape alone inside the generalist, and what does it cost pick-and-place? The shipped r23-r2 + 1,000 updates on
# r23's round-2 data, round 2's weights with the single-step tasks x8 (instead of x2.5), grasp x0.3, unstack x0.5.
# Then validation evals (seed_offset 400000) and benchmarks/reference_forms.py. Code frozen at $CODE.
set -e
CODE=${CODE:-/work/snap35}
D=/work/main/data/r22; E=/work/main/data/r23; S=/work/main/data/s17; T=/work/main/outputs/train; O=/work/main/outputs/r25
PY=/work/main/.venv/bin/python; TR=/work/main/.venv/bin/torchrun
TASKS="block2block block2absolutelocation block2relativelocation block2block_relative_location separate corner_to_same_color sort_corners side_together all_to_center"
LONG="corner_to_same_color sort_corners side_together"
W='+data.task_weights={side_together:0.24,corner_to_same_color:0.12,sort_corners:0.28,block2block:8,block2absolutelocation:8,block2relativelocation:8,block2block_relative_location:8,separate:8,stack:2.0,grasp:0.3,unstack:0.5}'
cd $CODE
PP=$(for t in grasp put_in_zone sort_by_color stack unstack; do printf "%s," $D/pickplace_$t; done)
PUSH="$S/push_block2block,$S/push_block2absolutelocation,$S/push_block2relativelocation,$S/push_block2block_relative_location,$S/push_separate,$S/push_sort_corners,$S/push_all_to_center,$S/push_corner_to_same_color_3k,$S/push_side_together_3k"
PUSH8=$(for t in $LONG; do printf "%s," $D/push8_$t; done)
DAG=$(for t in grasp put_in_zone sort_by_color stack unstack; do printf "%s," $E/dagger_pickplace_$t; done; for t in $TASKS; do printf "%s," $E/dagger_push_$t; done; for t in $LONG; do printf "%s," $E/dagger8_push_$t; done)
M=${M:-r25-iw}
if [ ! -f $T/$M/train_summary.json ]; then
  start=$(date +%s)
  OMP_NUM_THREADS=1 $TR --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny_dagger run_name=$M output_dir=$T/$M init_from=${INIT:-/work/main/outputs/r25/iw0} "data.dirs=[$PP$PUSH,$PUSH8${DAG%,}]" data.rephrase=8 "$W" train.steps=1000 save_every=500 progress=false > /work/logs/$M.log 2>&1
  echo "TRAIN $M $(( $(date +%s) - start )) s"
fi
$PY results/palme_tiny_recipe/shape_probe.py $T/$M $S/eval_block2block
$PY -m agent.evaluate checkpoint=$T/$M env=push "tasks=[$(echo $TASKS | tr ' ' ,)]" episodes=50 seed_offset=400000 workers=2 image_size=[64,64] progress=false hydra.run.dir=$O/val_push_$M > /work/logs/r25_val_push_$M.txt 2>&1
$PY benchmarks/reference_forms.py $O/val_push_$M/episodes.jsonl
$PY -m agent.evaluate checkpoint=$T/$M env=pickplace episodes=40 seed_offset=400000 workers=2 image_size=[64,64] progress=false hydra.run.dir=$O/val_pp_$M > /work/logs/r25_val_pp_$M.txt 2>&1
echo "R25 DONE"
