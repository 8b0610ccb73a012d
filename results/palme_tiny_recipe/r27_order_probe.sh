#!/bin/bash
# #21 stop 35 -> 36: can object tokens read the instruction? In the shipped prompt the object tokens come before
# `<instr>` ("Given <img>. Object 1 is <obj_1>. ... Instruction: <instr>. Robot: <robot>."), so in the causal LM no
# object token can attend to the instruction: only the tokens after it can, and T1 / T3 choose blocks by a property
# the instruction names (a corner, a side). r27: r26's round 1 exactly (r23's data, weights, 6,000 updates,
# instruction_words) with the instruction first (model.prompt.tokens=[image,instruction,object,robot]). Then push
# validation evals (seed_offset 400000) of r27-r1 and of r26-r1, the same round of the same recipe with the shipped
# order, and the shape probe for both. Code frozen at $CODE.
set -e
CODE=${CODE:-/work/snap37}
D=/work/main/data/r22; S=/work/main/data/s17; T=/work/main/outputs/train; O=/work/main/outputs/r27
PY=/work/main/.venv/bin/python; TR=/work/main/.venv/bin/torchrun
TASKS="block2block block2absolutelocation block2relativelocation block2block_relative_location separate corner_to_same_color sort_corners side_together all_to_center"
LONG="corner_to_same_color sort_corners side_together"
cd $CODE
PP=$(for t in grasp put_in_zone sort_by_color stack unstack; do printf "%s," $D/pickplace_$t; done)
PUSH="$S/push_block2block,$S/push_block2absolutelocation,$S/push_block2relativelocation,$S/push_block2block_relative_location,$S/push_separate,$S/push_sort_corners,$S/push_all_to_center,$S/push_corner_to_same_color_3k,$S/push_side_together_3k"
PUSH8=$(for t in $LONG; do printf "%s," $D/push8_$t; done)
FEATURES="model.state.features=[words,size_word,words_above,words_below,zone_words,board_words,near_words,instruction_words]"
if [ ! -f $T/r27-r1/train_summary.json ]; then
  start=$(date +%s)
  OMP_NUM_THREADS=1 $TR --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny run_name=r27-r1 output_dir=$T/r27-r1 "data.dirs=[$PP$PUSH,${PUSH8%,}]" data.rephrase=8 model.prompt.instruction.in_text=false "$FEATURES" "model.prompt.tokens=[image,instruction,object,robot]" '+data.task_weights={side_together:0.24,corner_to_same_color:0.12,sort_corners:0.28}' train.steps=6000 save_every=500 resume=$([ -d $T/r27-r1/checkpoints ] && echo true || echo false) progress=false >> /work/logs/r27_r1.log 2>&1
  echo "TRAIN r27 r1 $(( $(date +%s) - start )) s"
fi
for M in r27-r1 r26-r1; do
  $PY results/palme_tiny_recipe/shape_probe.py $T/$M $S/eval_block2block
  [ -f $O/val_push_$M/eval_info.json ] || $PY -m agent.evaluate checkpoint=$T/$M env=push "tasks=[$(echo $TASKS | tr ' ' ,)]" episodes=50 seed_offset=400000 workers=2 image_size=[64,64] progress=false hydra.run.dir=$O/val_push_$M > /work/logs/r27_val_push_$M.txt 2>&1
  tail -2 /work/logs/r27_val_push_$M.txt
done
echo "R27 DONE"
