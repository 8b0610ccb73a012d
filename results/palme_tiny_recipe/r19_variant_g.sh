#!/bin/bash
# #19 variant G (decided before its result): F with prompt.instruction.pooled=true: the encoder's sentence embedding,
# trained to make paraphrases alike, as the first <instr> token. Code at 12293c1 (/work/snap5). Chosen against F on
# validation phrasings v2: the higher pooled success; within 3 points F (the simpler).
exec "$(dirname "$0")/r19_round1.sh" G data.rephrase=8 model.prompt.instruction.in_text=false model.prompt.instruction.pooled=true
