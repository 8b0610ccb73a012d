#!/bin/bash
# #21 stop 38: r29's whole two-round recipe (r26_chain.sh: same data, counts, seeds, task weights and updates) with two
# object features added from the start, `instruction_order`: where a cube's mention stands among the named cubes, read
# with the sentence's vector (stack's wrong picks: which end of "the a on the b on the c" / "a tower of a, b and c,
# bottom first" is the bottom), and `instruction_corners`: the instruction's words for a corner a block is the nearest
# block to, in context (T1's wrong blocks: the block nearest another corner). DAgger logs of r30-r1 go to data/r30.
NAME=r30 CODE=${CODE:-/work/snap41} \
FEATURES="model.state.features=[words,size_word,words_above,words_below,zone_words,board_words,near_words,instruction_words,instruction_sides,instruction_corners,instruction_order]" \
  exec "$(dirname "$0")/r26_chain.sh"
