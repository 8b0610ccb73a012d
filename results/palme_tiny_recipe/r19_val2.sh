#!/bin/bash
# #19: the round-1 variants (and B's full recipe) on validation phrasings v2 (16-26 templates per task, written from the
# goal descriptions alone): new phrasings only, 30 training-range scenes per task from seed 960000 (no collection
# and no other validation uses them), 2 worker processes. Starts when variant F's validation is done.
while ! grep -q "VARIANT F DONE" /work/logs/variant_f.log; do sleep 30; done
cd /work/main
for m in B-r1 C-r1 E-r1 F-r1 B A-r1; do
  [ -f /work/logs/val2_$m.json ] && continue
  .venv/bin/python benchmarks/phrasing_gap.py outputs/train/r19-$m --phrasings benchmarks/data/validation_instructions_v2.json \
    --kinds new --split train --seed-offset 960000 --episodes 30 --workers 2 \
    --out /work/logs/val2_$m.json --failures /work/logs/fail2_$m.jsonl > /work/logs/val2_$m.txt 2>&1
  echo "VAL2 $m done $(date +%T)"
done
echo "VAL2 ALL DONE"
