#!/bin/bash
# #21 stop 33 -> 34: r22's round 1 (same data, keys and 6,000 updates) with data.task_weights that give the planning
# draws back to pick-and-place while the 3,000-scene T1/T3 folders stay. Weights from the planning example counts
# per task (read off palme-train's "plan draws per task" line of a first start): r22's unweighted shares were
# pick-and-place 31.6% (stack 4.3%), T3 27.6%, T1 20.1%; r21-HF's round 1 about 68% pick-and-place. These weights
# give pick-and-place 59.9% (stack 8.2%), T3 12.5%, T2 6.3%, T1 4.6%. Question: does stack come back (r22-r1: 24%
# while collecting DAgger logs) with T1/T3's scenes kept? Then validation evals (seed_offset 400000).
# Code frozen at $CODE (a worktree of the commit that adds this script).
set -e
CODE=${CODE:-/work/snap23}
D=/work/main/data/r22; S=/work/main/data/s17; T=/work/main/outputs/train; O=/work/main/outputs/r23
PY=/work/main/.venv/bin/python; TR=/work/main/.venv/bin/torchrun
TASKS="block2block block2absolutelocation block2relativelocation block2block_relative_location separate corner_to_same_color sort_corners side_together all_to_center"
PP=$(for t in grasp put_in_zone sort_by_color stack unstack; do printf "%s," $D/pickplace_$t; done)
PUSH="$S/push_block2block,$S/push_block2absolutelocation,$S/push_block2relativelocation,$S/push_block2block_relative_location,$S/push_separate,$S/push_sort_corners,$S/push_all_to_center,$S/push_corner_to_same_color_3k,$S/push_side_together_3k"
PUSH8="$D/push8_corner_to_same_color,$D/push8_sort_corners,$D/push8_side_together"
cd $CODE
if [ ! -f $T/r23-r1/train_summary.json ]; then
  start=$(date +%s)
  OMP_NUM_THREADS=1 $TR --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny run_name=r23-r1 output_dir=$T/r23-r1 "data.dirs=[$PP$PUSH,$PUSH8]" data.rephrase=8 model.prompt.instruction.in_text=false "model.state.features=[words,size_word,words_above,words_below,zone_words,board_words,near_words]" '+data.task_weights={side_together:0.24,corner_to_same_color:0.12,sort_corners:0.28}' train.steps=6000 save_every=1000 progress=false > /work/logs/r23_r1.log 2>&1
  echo "TRAIN r23 r1 $(( $(date +%s) - start )) s"
fi
M=r23-r1
$PY -m agent.evaluate checkpoint=$T/$M env=pickplace episodes=40 seed_offset=400000 workers=2 image_size=[64,64] progress=false hydra.run.dir=$O/val_pp_$M > /work/logs/r23_val_pp_$M.txt 2>&1
$PY -m agent.evaluate checkpoint=$T/$M env=push "tasks=[$(echo $TASKS | tr ' ' ,)]" episodes=50 seed_offset=400000 workers=2 image_size=[64,64] progress=false hydra.run.dir=$O/val_push_$M > /work/logs/r23_val_push_$M.txt 2>&1
echo "R23 R1 DONE"
