#!/bin/bash
# #19 recipe run, continued after the session that ran r19_rounds.sh ended inside DAgger-2 (sort_by_color at 156 of 300):
# tops DAgger-2 up to the recipe's counts (re-running into a folder skips its seeds; episodes=N adds N), then round 3.
set -e
cd /work/snap
PY=/work/main/.venv/bin/python
TR=/work/main/.venv/bin/torchrun
D=/work/main/data/r19
T=/work/main/outputs/train
W=B
start=$(date +%s)
for tn in sort_by_color:144 stack:400 unstack:50; do t=${tn%:*}
  $PY -m training.collect env=pickplace task=$t planner=palme checkpoint=$T/r19-$W-r2 keep_failures=true episodes=${tn#*:} seed_start=200000 workers=2 image_size=[64,64] out=$D/dagger2_$W\_pickplace_$t hydra.run.dir=/work/main/outputs/r19/dagger2/$t; done
echo "DAGGER2 top-up $(( $(date +%s) - start )) s"
BASE="$D/pickplace_grasp,$D/pickplace_put_in_zone,$D/pickplace_sort_by_color,$D/pickplace_stack,$D/pickplace_unstack,$D/push_all_to_center,$D/push_block2absolutelocation,$D/push_block2block,$D/push_block2block_relative_location,$D/push_block2relativelocation,$D/push_corner_to_same_color,$D/push_separate,$D/push_side_together,$D/push_sort_corners"
DG1="$D/dagger_${W}_pickplace_grasp,$D/dagger_${W}_pickplace_put_in_zone,$D/dagger_${W}_pickplace_sort_by_color,$D/dagger_${W}_pickplace_stack,$D/dagger_${W}_pickplace_unstack"
DG2="$D/dagger2_${W}_pickplace_grasp,$D/dagger2_${W}_pickplace_put_in_zone,$D/dagger2_${W}_pickplace_sort_by_color,$D/dagger2_${W}_pickplace_stack,$D/dagger2_${W}_pickplace_unstack"
start=$(date +%s)
OMP_NUM_THREADS=1 $TR --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny_dagger2 run_name=r19-$W output_dir=$T/r19-$W init_from=$T/r19-$W-r2 "data.dirs=[$BASE,$DG1,$DG2]"
echo "TRAIN $W r3 $(( $(date +%s) - start )) s"
echo RECIPE DONE
