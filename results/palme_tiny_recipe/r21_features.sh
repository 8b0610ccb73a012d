#!/bin/bash
# #21: does the model judge push progress better with board features? Round 1 of r21-F-r1's recipe (F: MiniLM-only
# instruction, data.rephrase=8; r19's pick-and-place logs + data/r21's 200 push episodes per task) with the object
# features board_words and near_words added (variant L), code frozen at /work/snap7 (789394b). Then the choice between
# r21-F-r1 and r21-L-r1 on validation seeds only: push L1 at seed_offset=400000 (50 per task; reports use offset 0)
# and the pick-and-place validation phrasings v2 (r19_val2.sh's protocol).
# Other variants: V=C EXTRA_FEATURES=corner_words CODE=/work/snap7 (a worktree at 2424a2c or later; L plus corner_words: the block nearest each
# corner, T1's choice); ended with "R21 FEATURES $V DONE".
V=${V:-L}
FEATURES="[words,size_word,words_above,words_below,zone_words,board_words,near_words${EXTRA_FEATURES:+,$EXTRA_FEATURES}]"
[ "$V" = L ] && while ! grep -q "VAL DONE" /work/logs/r21_dagger.log; do sleep 20; done
set -e
D=/work/main/data/r19; P=/work/main/data/r21; T=/work/main/outputs/train
PP="$D/pickplace_grasp,$D/pickplace_put_in_zone,$D/pickplace_sort_by_color,$D/pickplace_stack,$D/pickplace_unstack"
TASKS="block2block block2absolutelocation block2relativelocation block2block_relative_location separate corner_to_same_color sort_corners side_together all_to_center"
PUSH=$(for t in $TASKS; do printf "%s," $P/push_$t; done)
cd ${CODE:-/work/snap7}
start=$(date +%s)
OMP_NUM_THREADS=1 /work/main/.venv/bin/torchrun --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny run_name=r21-$V-r1 output_dir=$T/r21-$V-r1 "data.dirs=[$PP,${PUSH%,}]" data.rephrase=8 model.prompt.instruction.in_text=false "model.state.features=$FEATURES"
echo "TRAIN r21 $V r1 $(( $(date +%s) - start )) s"
start=$(date +%s)
/work/main/.venv/bin/palme-eval checkpoint=$T/r21-$V-r1 env=push "tasks=[$(echo $TASKS | tr ' ' ,)]" episodes=50 seed_offset=400000 workers=2 image_size=[64,64] progress=false hydra.run.dir=/work/main/outputs/r21/val_push_r21-$V-r1 > /work/logs/r21_val_push_r21-$V-r1.txt 2>&1
echo "VAL PUSH $V $(( $(date +%s) - start )) s"
/work/main/.venv/bin/python benchmarks/phrasing_gap.py $T/r21-$V-r1 --phrasings benchmarks/data/validation_instructions_v2.json \
  --kinds new --split train --seed-offset 960000 --episodes 30 --workers 2 \
  --out /work/logs/val2_r21-$V-r1.json --failures /work/logs/fail2_r21-$V-r1.jsonl > /work/logs/val2_r21-$V-r1.txt 2>&1
echo "R21 FEATURES $V DONE"
