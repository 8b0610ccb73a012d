#!/bin/bash
# #21: push data for the generalist: 200 oracle episodes per push task (the nine of the recipe; color_to_location stays
# out, the README's fine-tuning example), seeds from 0, at the model's 64 px, into data/r21/push_<task>. Re-running tops
# each folder up (palme-collect skips the seeds a folder holds).
cd /work/main
start=$(date +%s)
for t in block2block block2absolutelocation block2relativelocation block2block_relative_location separate corner_to_same_color sort_corners side_together all_to_center; do
  out=data/r21/push_$t
  have=$(.venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))['total_episodes'])" $out/meta/info.json 2>/dev/null || echo 0)
  [ "$have" -ge 200 ] && continue
  nice -n 5 .venv/bin/palme-collect env=push task=$t episodes=$((200 - have)) workers=2 image_size=[64,64] out=$out hydra.run.dir=outputs/r21/collect/$t || exit 1
  echo "COLLECT $t $(( $(date +%s) - start )) s"
done
echo "R21 COLLECT DONE $(( $(date +%s) - start )) s"
