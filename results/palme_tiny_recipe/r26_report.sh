#!/bin/bash
# #21 / #19 stop 35: report-seed figures of r26-r2, run once, only after it passed the adoption rule on validation seeds
# (results.md, stop 35). Exports the model folder, then palme-eval on L1 report seeds (offset 0): pick-and-place 300
# per task, push 50 per task, BLOCK_8 T1-T3 50 each; block names by reference form; camera reliance (20 per task,
# offset 600000); decision speed against the shipped r23-r2. Code frozen at $CODE. Re-running skips finished steps.
# Another candidate that passed its rule: NAME=<prefix> (NAME-r2, outputs/NAME).
set -e
CODE=${CODE:-/work/snap37}; NAME=${NAME:-r26}
T=/work/main/outputs/train; O=/work/main/outputs/$NAME; PY=/work/main/.venv/bin/python
M=$O/export
TASKS="block2block,block2absolutelocation,block2relativelocation,block2block_relative_location,separate,corner_to_same_color,sort_corners,side_together,all_to_center"
cd $CODE
[ -f $M/config.json ] || $PY -m training.export $T/$NAME-r2 $M
ev() { local out=$1; shift; [ -f $O/$out/eval_info.json ] && return 0; local start; start=$(date +%s)
  $PY -m agent.evaluate checkpoint=$M split=L1 workers=2 image_size=[64,64] progress=false hydra.run.dir=$O/$out "$@" > /work/logs/${NAME}_$out.txt 2>&1
  echo "$out $(( $(date +%s) - start )) s"; tail -3 /work/logs/${NAME}_$out.txt; }
ev report_push env=push "tasks=[$TASKS]" episodes=50
$PY benchmarks/reference_forms.py $O/report_push/episodes.jsonl
ev report_push8 env=push block_set=BLOCK_8 "tasks=[corner_to_same_color,sort_corners,side_together]" episodes=50
ev report_pp env=pickplace episodes=300
[ -f $O/camera.json ] || $PY benchmarks/camera_reliance.py $M --episodes 20 --seed-offset 600000 --out $O/camera.json | tail -8
$PY benchmarks/decision_speed.py /work/main/checkpoints/palme-tiny $M | tail -4
echo "$NAME REPORT DONE"
