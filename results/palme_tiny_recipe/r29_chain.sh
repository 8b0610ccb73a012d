#!/bin/bash
# #21 stop 37: r28 (r28_chain.sh) again with the stop-37 code (snap39: a micro-batch's instructions encoded together,
# prompt lengths from the tokenizer). data/r29 is a link to data/r28: round 2 reads r28-r1's DAgger logs (valid when
# r29-r1 equals r28-r1, checked after round 1). Measures the two training wall times alone against the 60-minute bar.
NAME=r29 CODE=${CODE:-/work/snap39} \
FEATURES="model.state.features=[words,size_word,words_above,words_below,zone_words,board_words,near_words,instruction_words,instruction_sides]" \
  exec "$(dirname "$0")/r26_chain.sh"
