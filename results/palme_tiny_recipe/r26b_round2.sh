#!/bin/bash
# #21 stop 35: r26b = r26's round 2 again from the same r26-r1 and the same DAgger logs, with two task weights changed
# after r26-r2 failed the adoption rule on stack alone (validation: stack 30 vs r23-r2's 50; the five single-step push
# tasks at 92-100): stack x3 (was x2) and the five single-step push tasks x1.5 (was x2.5), which keeps round 2's
# updates and cost. Then the same validation evals. r26_chain.sh skips its finished round 1 and DAgger logs. Code
# frozen at $CODE (main with the padded instruction_words).
M2=r26b-r2 CODE=${CODE:-/work/snap37} \
WEIGHTS='+data.task_weights={side_together:0.24,corner_to_same_color:0.12,sort_corners:0.28,block2block:1.5,block2absolutelocation:1.5,block2relativelocation:1.5,block2block_relative_location:1.5,separate:1.5,stack:3.0,grasp:0.6}' \
  exec "$(dirname "$0")/r26_chain.sh"
