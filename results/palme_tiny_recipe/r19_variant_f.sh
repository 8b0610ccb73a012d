#!/bin/bash
# #19 variant F (decided before E's result): E with prompt.instruction.in_text=false, as C: the words reach the LM only
# through the frozen encoder, which rephrasing feeds many phrasings of each goal. Code at d7c9589. Same rule as B, C, E.
# (Run after E's training as a standalone script then; its v2 validation ran from r19_val2.sh.)
exec "$(dirname "$0")/r19_round1.sh" F data.rephrase=8 model.prompt.instruction.in_text=false
