#!/bin/bash
# #19 recipe run: round 1 of the palme-tiny recipe on data/r19 for A (scratch text) and B (+ instruction token);
# validation phrasings choose the winner W (rule fixed before any result: higher pooled validation success;
# within 3 points: higher training-phrasing success; then B); W continues with DAgger rounds 2 and 3.
set -e
cd /work/snap
PY=/work/main/.venv/bin/python
TR=/work/main/.venv/bin/torchrun
D=/work/main/data/r19
T=/work/main/outputs/train
BASE="$D/pickplace_grasp,$D/pickplace_put_in_zone,$D/pickplace_sort_by_color,$D/pickplace_stack,$D/pickplace_unstack,$D/push_all_to_center,$D/push_block2absolutelocation,$D/push_block2block,$D/push_block2block_relative_location,$D/push_block2relativelocation,$D/push_corner_to_same_color,$D/push_separate,$D/push_side_together,$D/push_sort_corners"
for v in A B; do
  extra=""
  [ "$v" = B ] && extra="model.prompt.tokens=[image,object,instruction,robot]"
  start=$(date +%s)
  OMP_NUM_THREADS=1 $TR --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny run_name=r19-$v-r1 output_dir=$T/r19-$v-r1 "data.dirs=[$BASE]" $extra
  echo "TRAIN $v r1 $(( $(date +%s) - start )) s"
done
for v in A B; do
  start=$(date +%s)
  $PY /work/main/benchmarks/validate_phrasing.py $T/r19-$v-r1 --episodes 20 --tasks grasp stack put_in_zone --out /work/logs/val_$v.a.json > /work/logs/val_$v.a.txt 2>&1 &
  $PY /work/main/benchmarks/validate_phrasing.py $T/r19-$v-r1 --episodes 20 --tasks sort_by_color unstack --out /work/logs/val_$v.b.json > /work/logs/val_$v.b.txt 2>&1
  wait
  echo "VAL $v $(( $(date +%s) - start )) s"
done
W=$($PY - <<'PYEOF'
import json
def score(v):
    r = {**json.load(open(f"/work/logs/val_{v}.a.json"))["results"], **json.load(open(f"/work/logs/val_{v}.b.json"))["results"]}
    val = [x for t in r.values() for x in t["validation"]]; tr = [x for t in r.values() for x in t["training"]]
    return 100 * sum(val) / len(val), 100 * sum(tr) / len(tr)
a, b = score("A"), score("B")
print("A" if (a[0] > b[0] + 3 or (abs(a[0] - b[0]) <= 3 and a[1] > b[1])) else "B")
PYEOF
)
echo "WINNER $W"
start=$(date +%s)
for tn in grasp:150 put_in_zone:300 sort_by_color:300 stack:400 unstack:50; do t=${tn%:*}
  $PY -m training.collect env=pickplace task=$t planner=palme checkpoint=$T/r19-$W-r1 keep_failures=true episodes=${tn#*:} seed_start=100000 workers=2 image_size=[64,64] out=$D/dagger_$W\_pickplace_$t hydra.run.dir=/work/main/outputs/r19/dagger/$t; done
echo "DAGGER1 $(( $(date +%s) - start )) s"
DG1="$D/dagger_${W}_pickplace_grasp,$D/dagger_${W}_pickplace_put_in_zone,$D/dagger_${W}_pickplace_sort_by_color,$D/dagger_${W}_pickplace_stack,$D/dagger_${W}_pickplace_unstack"
start=$(date +%s)
OMP_NUM_THREADS=1 $TR --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny_dagger run_name=r19-$W-r2 output_dir=$T/r19-$W-r2 init_from=$T/r19-$W-r1 "data.dirs=[$BASE,$DG1]"
echo "TRAIN $W r2 $(( $(date +%s) - start )) s"
start=$(date +%s)
for tn in grasp:300 put_in_zone:300 sort_by_color:300 stack:400 unstack:50; do t=${tn%:*}
  $PY -m training.collect env=pickplace task=$t planner=palme checkpoint=$T/r19-$W-r2 keep_failures=true episodes=${tn#*:} seed_start=200000 workers=2 image_size=[64,64] out=$D/dagger2_$W\_pickplace_$t hydra.run.dir=/work/main/outputs/r19/dagger2/$t; done
echo "DAGGER2 $(( $(date +%s) - start )) s"
DG2="$D/dagger2_${W}_pickplace_grasp,$D/dagger2_${W}_pickplace_put_in_zone,$D/dagger2_${W}_pickplace_sort_by_color,$D/dagger2_${W}_pickplace_stack,$D/dagger2_${W}_pickplace_unstack"
start=$(date +%s)
OMP_NUM_THREADS=1 $TR --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny_dagger2 run_name=r19-$W output_dir=$T/r19-$W init_from=$T/r19-$W-r2 "data.dirs=[$BASE,$DG1,$DG2]"
echo "TRAIN $W r3 $(( $(date +%s) - start )) s"
echo RECIPE DONE
