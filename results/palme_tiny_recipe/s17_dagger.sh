#!/bin/bash
# Stop 32: DAgger logs of the push fine-tune PM (the model acts, the oracle labels every step), seeds from 200000.
cd /work/main
start=$(date +%s)
for tn in block2block:50 block2absolutelocation:50 block2relativelocation:50 block2block_relative_location:50 separate:50 corner_to_same_color:200 sort_corners:100 side_together:200 all_to_center:100; do
  t=${tn%:*}; n=${tn#*:}
  nice -n 5 .venv/bin/palme-collect env=push task=$t planner=palme checkpoint=outputs/train/s17-PM/checkpoints/last/pretrained_model keep_failures=true episodes=$n seed_start=200000 workers=2 image_size=[64,64] out=data/s17/dagger_PM_$t hydra.run.dir=outputs/s17/dagger/$t progress=false 2>&1 | tail -1 | cut -c1-170
done
echo "DAGGER DONE $(( $(date +%s) - start )) s"
