#!/bin/bash
# #21: rounds 2 and 3 of the generalist recipe for the round-1 variant $1 (F or L: outputs/train/r21-$1-r1), both worlds.
# Round 2 data: r19's pick-and-place logs and their DAgger logs of B's round 1 (data/r19/dagger_B_*), data/r21's push
# logs, push DAgger logs of r21-F-r1 (r21_dagger.sh) and BLOCK_8 T1-T3 oracle logs. Round 3 adds r19's DAgger logs of
# B's round 2 and push DAgger logs (BLOCK_4 and BLOCK_8) of this variant's round 2. $EXTRA: overrides of both rounds
# (the variant's model keys are in its round-1 checkpoint). Code frozen at $CODE (default /work/snap7: 8ee7375).
# Re-running continues: finished rounds are skipped and each collection tops its folder up.
# $ALT: "old=new ..." folder-name swaps in both rounds' data lists (V=H: T2's home-corner logs replace T2's folders).
set -e
W=$1
CODE=${CODE:-/work/snap7}
D=/work/main/data/r19; P=/work/main/data/r21; T=/work/main/outputs/train
PY=/work/main/.venv/bin/python; TR=/work/main/.venv/bin/torchrun
TASKS="block2block block2absolutelocation block2relativelocation block2block_relative_location separate corner_to_same_color sort_corners side_together all_to_center"
LONG="corner_to_same_color sort_corners side_together"
PP=$(for t in grasp put_in_zone sort_by_color stack unstack; do printf "%s," $D/pickplace_$t; done)
PUSH=$(for t in $TASKS; do printf "%s," $P/push_$t; done)
PP_DAGGER=$(for t in grasp put_in_zone sort_by_color stack unstack; do printf "%s," $D/dagger_B_pickplace_$t; done)
PP_DAGGER2=$(for t in grasp put_in_zone sort_by_color stack unstack; do printf "%s," $D/dagger2_B_pickplace_$t; done)
PUSH_DAGGER=$(for t in $TASKS; do printf "%s," $P/dagger_r21-F-r1_push_$t; done)
PUSH8=$(for t in $LONG; do printf "%s," $P/push8_$t; done)
swap() { local out="" f n; IFS=, read -ra fs <<< "$1"; for f in "${fs[@]}"; do n=${f##*/}
  for kv in $ALT; do [ "${kv%%=*}" = "$n" ] && f=${f%/*}/${kv#*=}; done; out+="$f,"; done; echo "${out%,}"; }
ROUND2=$(swap "$PP$PUSH$PP_DAGGER$PUSH_DAGGER${PUSH8%,}")
cd $CODE
if [ ! -f $T/r21-$W-r2/train_summary.json ]; then
  start=$(date +%s)
  OMP_NUM_THREADS=1 $TR --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny_dagger run_name=r21-$W-r2 output_dir=$T/r21-$W-r2 init_from=$T/r21-$W-r1 "data.dirs=[$ROUND2]" data.rephrase=8 $EXTRA
  echo "TRAIN r21 $W r2 $(( $(date +%s) - start )) s"
fi
start=$(date +%s)
CODE=$CODE SEED=200000 BLOCK8="" /work/main/results/palme_tiny_recipe/r21_dagger.sh r21-$W-r2
have() { $PY -c "import json,sys; print(json.load(open(sys.argv[1]))['total_episodes'])" $1/meta/info.json 2>/dev/null || echo 0; }
for t in $LONG; do out=$P/dagger8_r21-$W-r2_push_$t; h=$(have $out); [ "$h" -ge 100 ] && continue
  $PY -m training.collect env=push task=$t block_set=BLOCK_8 planner=palme checkpoint=$T/r21-$W-r2 keep_failures=true episodes=$((100 - h)) seed_start=200000 workers=2 image_size=[64,64] out=$out hydra.run.dir=/work/main/outputs/r21/dagger8_$W/$t progress=false
done
echo "DAGGER2 r21 $W $(( $(date +%s) - start )) s"
PUSH_DAGGER2=$(for t in $TASKS; do printf "%s," $P/dagger_r21-$W-r2_push_$t; done; for t in $LONG; do printf "%s," $P/dagger8_r21-$W-r2_push_$t; done)
if [ ! -f $T/r21-$W/train_summary.json ]; then
  start=$(date +%s)
  OMP_NUM_THREADS=1 $TR --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny_dagger2 run_name=r21-$W output_dir=$T/r21-$W init_from=$T/r21-$W-r2 "data.dirs=[$ROUND2,$(swap "$PP_DAGGER2${PUSH_DAGGER2%,}")]" data.rephrase=8 $EXTRA
  echo "TRAIN r21 $W r3 $(( $(date +%s) - start )) s"
fi
echo "CHAIN r21 $W DONE"
