#!/bin/bash
# A candidate recipe, run as `make palme-tiny` runs the shipped one (the same folders, counts, seeds, configs and
# updates), with model changes for round 1: oracle logs topped up to the Makefile's counts in $DATA (shared by every
# candidate; a fresh machine collects them first, about 40 minutes), round 1 (experiment=palme_tiny + $FEATURES
# + $MODEL), DAgger logs of round 1 in $DATA/../$NAME, round 2 (experiment=palme_tiny_dagger), then validation evals
# only (seed_offset 400000: pick-and-place 40 per task, push 50, BLOCK_8 T1-T3 30). Code frozen at $CODE (a worktree:
# `git worktree add --detach /work/snapN HEAD`). Re-running continues (finished steps skip). Wall times go to stdout.
#   NAME=r33 CODE=/work/snap45 FEATURES="model.state.features=[...]" results/palme_tiny_recipe/candidate_chain.sh
set -e
: "${NAME:?set NAME}" "${CODE:?set CODE}"
DATA=${DATA:-/work/data/palme-tiny}; E=$(dirname "$DATA")/$NAME; MODEL=${MODEL:-}; FEATURES=${FEATURES:-}
T=/work/main/outputs/train; O=/work/main/outputs/$NAME; PY=/work/main/.venv/bin/python; TR=/work/main/.venv/bin/torchrun
LOGS=${LOGS:-/work/logs}; mkdir -p "$LOGS" "$O"
PUSH="block2block block2absolutelocation block2relativelocation block2block_relative_location separate corner_to_same_color sort_corners side_together all_to_center"
LONG="corner_to_same_color sort_corners side_together"
have() { $PY -c "import json,sys; print(json.load(open(sys.argv[1]))['total_episodes'])" "$1/meta/info.json" 2>/dev/null || echo 0; }
collect() {  # out want [palme-collect overrides...]: top the folder up to `want` episodes
  local out=$1 want=$2; shift 2; local h; h=$(have "$out"); [ "$h" -ge "$want" ] && return 0
  $PY -m training.collect episodes=$((want - h)) workers=2 image_size=[64,64] out="$out" hydra.run.dir="$O/collect/${out##*/}" progress=false "$@" 2>&1 | tail -1 | cut -c1-200
}
cd "$CODE"
start=$(date +%s)
for tn in grasp:900 put_in_zone:300 sort_by_color:300 stack:300 unstack:300; do collect "$DATA/pickplace_${tn%:*}" "${tn#*:}" env=pickplace task="${tn%:*}"; done
for t in $PUSH; do case $t in corner_to_same_color|side_together) n=3000;; *) n=200;; esac; collect "$DATA/push_$t" $n env=push task=$t; done
for t in $LONG; do collect "$DATA/push8_$t" 300 env=push task=$t block_set=BLOCK_8; done
echo "ORACLE LOGS $(( $(date +%s) - start )) s"
ORACLE=$(for t in grasp put_in_zone sort_by_color stack unstack; do printf "%s," "$DATA/pickplace_$t"; done
         for t in $PUSH; do printf "%s," "$DATA/push_$t"; done; for t in $LONG; do printf "%s," "$DATA/push8_$t"; done)
M1=$NAME-r1; M2=$NAME-r2
if [ ! -f "$T/$M1/train_summary.json" ]; then
  start=$(date +%s)
  OMP_NUM_THREADS=1 $TR --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny run_name=$M1 output_dir="$T/$M1" "data.dirs=[${ORACLE%,}]" $FEATURES $MODEL save_every=500 resume=$([ -d "$T/$M1/checkpoints" ] && echo true || echo false) progress=false >> "$LOGS/${M1/-/_}.log" 2>&1
  echo "TRAIN $M1 $(( $(date +%s) - start )) s"
fi
start=$(date +%s)
R1="planner=palme checkpoint=$T/$M1 keep_failures=true"
for tn in grasp:150 put_in_zone:300 sort_by_color:300 stack:400 unstack:50; do
  collect "$E/dagger_pickplace_${tn%:*}" "${tn#*:}" env=pickplace task="${tn%:*}" $R1 seed_start=100000; done
for tn in block2block:50 block2absolutelocation:50 block2relativelocation:100 block2block_relative_location:50 separate:30 corner_to_same_color:150 sort_corners:200 side_together:200 all_to_center:200; do
  collect "$E/dagger_push_${tn%:*}" "${tn#*:}" env=push task="${tn%:*}" $R1 seed_start=300000; done
for t in $LONG; do collect "$E/dagger8_push_$t" 100 env=push task=$t block_set=BLOCK_8 $R1 seed_start=300000; done
echo "DAGGER $(( $(date +%s) - start )) s"
DAG=$(for t in grasp put_in_zone sort_by_color stack unstack; do printf "%s," "$E/dagger_pickplace_$t"; done
      for t in $PUSH; do printf "%s," "$E/dagger_push_$t"; done; for t in $LONG; do printf "%s," "$E/dagger8_push_$t"; done)
if [ ! -f "$T/$M2/train_summary.json" ]; then
  start=$(date +%s)
  OMP_NUM_THREADS=1 $TR --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny_dagger run_name=$M2 output_dir="$T/$M2" init_from="$T/$M1" "data.dirs=[$ORACLE${DAG%,}]" save_every=500 resume=$([ -d "$T/$M2/checkpoints" ] && echo true || echo false) progress=false >> "$LOGS/${M2/-/_}.log" 2>&1
  echo "TRAIN $M2 $(( $(date +%s) - start )) s"
fi
[ -n "${NO_EVAL:-}" ] && { echo "$NAME TRAINED"; exit 0; }
start=$(date +%s)
ev() { local out=$1; shift; [ -f "$O/$out/eval_info.json" ] && return 0
  $PY -m agent.evaluate checkpoint="$T/$M2" split=L1 workers=2 image_size=[64,64] seed_offset=400000 progress=false hydra.run.dir="$O/$out" "$@" > "$LOGS/${NAME}_$out.txt" 2>&1; }
ev val_pp env=pickplace episodes=40
ev val_push env=push "tasks=[$(echo $PUSH | tr ' ' ,)]" episodes=50
ev val_push8 env=push block_set=BLOCK_8 "tasks=[$(echo $LONG | tr ' ' ,)]" episodes=30
echo "VAL $M2 $(( $(date +%s) - start )) s"
echo "$NAME DONE"
