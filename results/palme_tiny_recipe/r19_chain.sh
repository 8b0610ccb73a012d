#!/bin/bash
# #19: the DAgger rounds 2 and 3 of the palme-tiny recipe for variant $1 (its round 1 at outputs/train/r19-$1-r1),
# code frozen at $CODE (default /work/snap3: commit 5d99438, prompt.instruction.in_text); $EXTRA: overrides both
# training rounds add (variant E: EXTRA=data.rephrase=8 CODE=/work/snap5). Re-running continues: each collection
# skips the seeds its folder holds, so a broken-off run is resumed by running this again with the same counts left.
set -e
W=$1
cd ${CODE:-/work/snap3}
PY=/work/main/.venv/bin/python
TR=/work/main/.venv/bin/torchrun
D=/work/main/data/r19
T=/work/main/outputs/train
BASE="$D/pickplace_grasp,$D/pickplace_put_in_zone,$D/pickplace_sort_by_color,$D/pickplace_stack,$D/pickplace_unstack,$D/push_all_to_center,$D/push_block2absolutelocation,$D/push_block2block,$D/push_block2block_relative_location,$D/push_block2relativelocation,$D/push_corner_to_same_color,$D/push_separate,$D/push_side_together,$D/push_sort_corners"
collect() {  # round seed_start counts...: top each folder up to its count
  local round=$1 ckpt=$2 seed=$3; shift 3
  for tn in "$@"; do t=${tn%:*}; want=${tn#*:}; out=$D/${round}_${W}_pickplace_$t
    have=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['total_episodes'])" $out/meta/info.json 2>/dev/null || echo 0)
    [ "$have" -ge "$want" ] && continue
    $PY -m training.collect env=pickplace task=$t planner=palme checkpoint=$ckpt keep_failures=true episodes=$((want - have)) seed_start=$seed workers=2 image_size=[64,64] out=$out hydra.run.dir=/work/main/outputs/r19/${round}_$W/$t
  done
}
dirs() { echo "$D/$1_${W}_pickplace_grasp,$D/$1_${W}_pickplace_put_in_zone,$D/$1_${W}_pickplace_sort_by_color,$D/$1_${W}_pickplace_stack,$D/$1_${W}_pickplace_unstack"; }
start=$(date +%s)
collect dagger $T/r19-$W-r1 100000 grasp:150 put_in_zone:300 sort_by_color:300 stack:400 unstack:50
echo "DAGGER1 $W $(( $(date +%s) - start )) s"
if [ ! -f $T/r19-$W-r2/train_summary.json ]; then
  start=$(date +%s)
  OMP_NUM_THREADS=1 $TR --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny_dagger run_name=r19-$W-r2 output_dir=$T/r19-$W-r2 init_from=$T/r19-$W-r1 "data.dirs=[$BASE,$(dirs dagger)]" $EXTRA
  echo "TRAIN $W r2 $(( $(date +%s) - start )) s"
fi
start=$(date +%s)
collect dagger2 $T/r19-$W-r2 200000 grasp:300 put_in_zone:300 sort_by_color:300 stack:400 unstack:50
echo "DAGGER2 $W $(( $(date +%s) - start )) s"
start=$(date +%s)
OMP_NUM_THREADS=1 $TR --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny_dagger2 run_name=r19-$W output_dir=$T/r19-$W init_from=$T/r19-$W-r2 "data.dirs=[$BASE,$(dirs dagger),$(dirs dagger2)]" $EXTRA
echo "TRAIN $W r3 $(( $(date +%s) - start )) s"
echo "CHAIN $W DONE"
