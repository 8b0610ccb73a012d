#!/bin/bash
# #21: does the model judge push progress better with board features? Round 1 of r21-F-r1's recipe (F: MiniLM-only
# instruction, data.rephrase=8; r19's pick-and-place logs + data/r21's 200 push episodes per task) with the object
# features board_words and near_words added (variant L), code frozen at /work/snap7 (789394b). Then the choice between
# r21-F-r1 and r21-L-r1 on validation seeds only: push L1 at seed_offset=400000 (50 per task; reports use offset 0)
# and the pick-and-place validation phrasings v2 (r19_val2.sh's protocol).
# Other variants: V=C EXTRA_FEATURES=corner_words CODE=/work/snap7 (a worktree at 2424a2c or later; L plus corner_words: the block nearest each
# corner, T1's choice); ended with "R21 FEATURES $V DONE".
# The recipe and the evaluations are r21_variant.sh's (same keys and defaults); this adds the wait for L's DAgger.
V=${V:-L}
[ "$V" = L ] && while ! grep -q "VAL DONE" /work/logs/r21_dagger.log; do sleep 20; done
V=$V exec bash "$(dirname "$0")/r21_variant.sh"
