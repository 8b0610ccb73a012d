#!/bin/bash
# #21: push DAgger logs of a round-1 model ($1, default r21-F-r1: it acts, the oracle labels every step), more episodes
# for the tasks it fails most, seeds from 100000 into data/r21/dagger_<model>_push_<task>; then BLOCK_8 oracle episodes
# for T1-T3 (100 each, seeds from 0) into data/r21/push8_<task>. Code frozen at $CODE (default /work/snap6: af60319).
# Re-running tops each folder up.
M=${1:-r21-F-r1}
cd ${CODE:-/work/snap6}
PY=/work/main/.venv/bin/python
D=/work/main/data/r21
T=/work/main/outputs/train
SEED=${SEED:-100000}
have() { $PY -c "import json,sys; print(json.load(open(sys.argv[1]))['total_episodes'])" $1/meta/info.json 2>/dev/null || echo 0; }
start=$(date +%s)
for tn in ${COUNTS:-block2block:50 block2absolutelocation:50 block2relativelocation:100 block2block_relative_location:50 separate:30 corner_to_same_color:150 sort_corners:200 side_together:200 all_to_center:200}; do
  t=${tn%:*}; want=${tn#*:}; out=$D/dagger_${M}_push_$t; h=$(have $out)
  [ "$h" -ge "$want" ] && continue
  $PY -m training.collect env=push task=$t planner=palme checkpoint=$T/$M keep_failures=true episodes=$((want - h)) seed_start=$SEED workers=2 image_size=[64,64] out=$out hydra.run.dir=/work/main/outputs/r21/dagger_$M/$t progress=false || exit 1
  echo "DAGGER $M $t $(( $(date +%s) - start )) s"
done
for t in ${BLOCK8-corner_to_same_color sort_corners side_together}; do  # BLOCK8="": none
  out=$D/push8_$t; h=$(have $out)
  [ "$h" -ge 100 ] && continue
  $PY -m training.collect env=push task=$t block_set=BLOCK_8 episodes=$((100 - h)) workers=2 image_size=[64,64] out=$out hydra.run.dir=/work/main/outputs/r21/push8/$t progress=false || exit 1
  echo "BLOCK8 $t $(( $(date +%s) - start )) s"
done
echo "R21 DAGGER $M DONE $(( $(date +%s) - start )) s"
