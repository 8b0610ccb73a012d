#!/bin/bash
# #21 stop 38: r29's whole two-round recipe (r26_chain.sh) with `instruction_corners` alone added from the start (r30
# added it together with `instruction_order`; its round 1 took T1 to 99-100% on its DAgger seeds but T2 and
# all_to_center fell). DAgger logs of r31-r1 go to data/r31. ROUND1_ONLY=1 stops after round 1.
NAME=r31 CODE=${CODE:-/work/snap41} \
FEATURES="model.state.features=[words,size_word,words_above,words_below,zone_words,board_words,near_words,instruction_words,instruction_sides,instruction_corners]" \
  exec "$(dirname "$0")/r26_chain.sh"
