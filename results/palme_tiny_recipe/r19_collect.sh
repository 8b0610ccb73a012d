#!/bin/bash
# oracle logs of the #19 recipe with the new grammar (same counts as make palme-tiny); code frozen at /work/snap
set -e
cd /work/snap
P="/work/main/.venv/bin/python -m training.collect"
D=/work/main/data/r19
O=/work/main/outputs/r19/collect
$P env=pickplace task=grasp episodes=900 workers=2 image_size=[64,64] out=$D/pickplace_grasp hydra.run.dir=$O/grasp
for t in put_in_zone sort_by_color stack unstack; do $P env=pickplace task=$t episodes=300 workers=2 image_size=[64,64] out=$D/pickplace_$t hydra.run.dir=$O/$t; done
for t in block2block block2absolutelocation block2relativelocation block2block_relative_location; do $P env=push task=$t episodes=20 workers=2 image_size=[64,64] out=$D/push_$t hydra.run.dir=$O/$t; done
for t in separate corner_to_same_color sort_corners side_together all_to_center; do $P env=push task=$t episodes=12 workers=2 image_size=[64,64] out=$D/push_$t hydra.run.dir=$O/$t; done
echo COLLECT DONE
