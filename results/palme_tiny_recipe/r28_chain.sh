#!/bin/bash
# #21 stop 36: r28 = r26's whole two-round recipe (r23's data, counts, seeds, task weights and updates, plus
# instruction_words) with the instruction_sides object feature too. Round 1 is r28_sides_probe.sh's r28-r1 (the same
# command; a finished run is skipped), then DAgger logs of r28-r1 in both worlds (data/r28), round 2, validation evals
# (seed_offset 400000) and the shape probe. Code frozen at $CODE.
NAME=r28 CODE=${CODE:-/work/snap38} \
FEATURES="model.state.features=[words,size_word,words_above,words_below,zone_words,board_words,near_words,instruction_words,instruction_sides]" \
  exec "$(dirname "$0")/r26_chain.sh"
