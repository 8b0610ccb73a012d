#!/bin/bash
# #21: a round-1 variant of r21_features.sh's recipe (r21-F-r1's data and keys, board_words and near_words), then the
# same validation evals (push L1 at seed_offset=400000, 50 per task; pick-and-place v2 phrasings). Keys: V (the run is
# r21-$V-r1), CODE (a frozen worktree), EXTRA_FEATURES (object features added to L's), IN_TEXT (true: the instruction's
# words in the prompt as well as MiniLM's <instr> tokens; default false). Ends with "R21 FEATURES $V DONE".
# The evals run $CODE's code too (PYTHONPATH). EXTRA: more overrides. ALT: "task=folder ..." pairs that replace a push task's data folder. Variants run: V=P CODE=<push-goal branch> (the goal source asks where T1-T3's blocks go),
# V=T IN_TEXT=true, V=Q EXTRA=+data.weights.refer=0.05 (the refer source: which block words mean), V=H CODE=<t2-canon
# branch> ALT=sort_corners=data/r21/push_sort_corners_home (T2's oracle sends each colour to its home corner).
V=${V:-L}
FEATURES="[words,size_word,words_above,words_below,zone_words,board_words,near_words${EXTRA_FEATURES:+,$EXTRA_FEATURES}]"

set -e
D=/work/main/data/r19; P=/work/main/data/r21; T=/work/main/outputs/train
PP="$D/pickplace_grasp,$D/pickplace_put_in_zone,$D/pickplace_sort_by_color,$D/pickplace_stack,$D/pickplace_unstack"
TASKS="block2block block2absolutelocation block2relativelocation block2block_relative_location separate corner_to_same_color sort_corners side_together all_to_center"
alt() { for kv in $ALT; do [ "${kv%%=*}" = "$1" ] && { echo "${kv#*=}"; return; }; done; echo "$P/push_$1"; }
PUSH=$(for t in $TASKS; do printf "%s," "$(alt $t)"; done)
cd ${CODE:-/work/snap7}
start=$(date +%s)
OMP_NUM_THREADS=1 /work/main/.venv/bin/torchrun --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny run_name=r21-$V-r1 output_dir=$T/r21-$V-r1 "data.dirs=[$PP,${PUSH%,}]" data.rephrase=8 model.prompt.instruction.in_text=${IN_TEXT:-false} "model.state.features=$FEATURES" $EXTRA
echo "TRAIN r21 $V r1 $(( $(date +%s) - start )) s"
start=$(date +%s)
PYTHONPATH=$PWD /work/main/.venv/bin/python -m agent.evaluate checkpoint=$T/r21-$V-r1 env=push "tasks=[$(echo $TASKS | tr ' ' ,)]" episodes=50 seed_offset=400000 workers=2 image_size=[64,64] progress=false hydra.run.dir=/work/main/outputs/r21/val_push_r21-$V-r1 > /work/logs/r21_val_push_r21-$V-r1.txt 2>&1
echo "VAL PUSH $V $(( $(date +%s) - start )) s"
PYTHONPATH=$PWD /work/main/.venv/bin/python benchmarks/phrasing_gap.py $T/r21-$V-r1 --phrasings benchmarks/data/validation_instructions_v2.json \
  --kinds new --split train --seed-offset 960000 --episodes 30 --workers 2 \
  --out /work/logs/val2_r21-$V-r1.json --failures /work/logs/fail2_r21-$V-r1.jsonl > /work/logs/val2_r21-$V-r1.txt 2>&1
echo "R21 FEATURES $V DONE"
