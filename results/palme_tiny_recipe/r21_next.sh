#!/bin/bash
# #21: after r21_features.sh, choose the round-1 variant by a rule fixed before its results (validation seeds only):
# L (board_words + near_words) if its push validation success (seed_offset=400000) beats r21-F-r1's by more than 3
# points and its pick-and-place validation phrasings v2 (pooled new words) are no more than 3 points below; else F.
# Then rounds 2 and 3 (r21_chain.sh) and the measurements of the final model on report seeds (offset 0), once:
# push L1 50 per task (BLOCK_4 mix of the split: N_CHOOSE_K) and BLOCK_8 T1-T3 50 each, pick-and-place L1 300 per task
# with the training phrasing, and pick-and-place validation phrasings v2 / grammar phrasings (validation seeds).
while ! grep -q "R21 FEATURES DONE" /work/logs/r21_features.log; do sleep 30; done
set -e
cd /work/snap7  # the code of the runs (8ee7375: `git worktree add /work/snap7 8ee7375`); logs and outputs go to /work/main
push() { python3 -c "import sys,re; t=open(sys.argv[1]).read(); print(re.search(r'^all +all +\d+ +([\d.]+)', t, re.M).group(1))" $1; }
pooled() { python3 -c "import json,sys; e=json.load(open(sys.argv[1]))['episodes']; print(round(100*sum(r['new'] for r in e)/len(e),1))" $1; }
PF=$(push /work/logs/r21_val_push_r21-F-r1.txt); PL=$(push /work/logs/r21_val_push_r21-L-r1.txt)
VF=$(pooled /work/logs/val2_r21-F-r1.json); VL=$(pooled /work/logs/val2_r21-L-r1.json)
if python3 -c "import sys; sys.exit(0 if $PL > $PF + 3 and $VL >= $VF - 3 else 1)"; then W=L; else W=F; fi
echo "CHOSEN $W (push validation L $PL vs F $PF; v2 new words L $VL vs F $VF)"
/work/main/results/palme_tiny_recipe/r21_chain.sh $W
M=/work/main/outputs/train/r21-$W
TASKS="[block2block,block2absolutelocation,block2relativelocation,block2block_relative_location,separate,corner_to_same_color,sort_corners,side_together,all_to_center]"
start=$(date +%s)
/work/main/.venv/bin/palme-eval checkpoint=$M env=push "tasks=$TASKS" episodes=50 workers=2 image_size=[64,64] progress=false hydra.run.dir=/work/main/outputs/r21/eval_push_r21-$W > /work/logs/r21_eval_push_r21-$W.txt 2>&1
/work/main/.venv/bin/palme-eval checkpoint=$M env=push block_set=BLOCK_8 "tasks=[corner_to_same_color,sort_corners,side_together]" episodes=50 workers=2 image_size=[64,64] progress=false hydra.run.dir=/work/main/outputs/r21/eval_push8_r21-$W > /work/logs/r21_eval_push8_r21-$W.txt 2>&1
echo "EVAL PUSH r21-$W $(( $(date +%s) - start )) s"
/work/main/.venv/bin/python benchmarks/phrasing_gap.py $M --phrasings benchmarks/data/validation_instructions_v2.json \
  --kinds new --split train --seed-offset 960000 --episodes 30 --workers 2 \
  --out /work/logs/val2_r21-$W.json --failures /work/logs/fail2_r21-$W.jsonl > /work/logs/val2_r21-$W.txt 2>&1
/work/main/.venv/bin/python benchmarks/phrasing_gap.py $M --phrasings benchmarks/data/validation_instructions_v2.json \
  --kinds grammar --split train --seed-offset 960000 --episodes 30 --workers 2 \
  --out /work/logs/grammar_r21-$W.json > /work/logs/grammar_r21-$W.txt 2>&1
echo "VALIDATION r21-$W done"
start=$(date +%s)
/work/main/.venv/bin/palme-eval checkpoint=$M env=pickplace "tasks=[grasp,put_in_zone,sort_by_color,stack,unstack]" episodes=300 workers=2 image_size=[64,64] progress=false hydra.run.dir=/work/main/outputs/r21/eval_pp_r21-$W > /work/logs/r21_eval_pp_r21-$W.txt 2>&1
echo "EVAL PP r21-$W $(( $(date +%s) - start )) s"
echo "R21 NEXT DONE"
