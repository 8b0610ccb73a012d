#!/bin/bash
# #21 / #19 stop 39: r29's whole two-round recipe (r26_chain.sh) with `instruction_corners` (r31: T1 80 -> 100 on
# validation) and `instruction_support` (the cube the instruction puts each cube on, and the cube it puts on it, as
# words, and whether each is there) added from the start. DAgger logs of r32-r1 go to data/r32. ROUND1_ONLY=1 stops
# after round 1.
NAME=r32 CODE=${CODE:-/work/snap44} \
FEATURES="model.state.features=[words,size_word,words_above,words_below,zone_words,board_words,near_words,instruction_words,instruction_sides,instruction_corners,instruction_support]" \
  exec "$(dirname "$0")/r26_chain.sh"
