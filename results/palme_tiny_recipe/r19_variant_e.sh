#!/bin/bash
# #19 variant E (decided before its result): B's round 1 plus data.rephrase=8 (instruction augmentation: each prompt holds
# the logged words or one of 8 other training phrasings of the episode's goal), code at d7c9589; compared with B's
# round 1 on the validation phrasings by the same rule (pooled; within 3 points the training phrasings; then B).
# (Run as a standalone script then; its v2 validation ran from r19_val2.sh.)
exec "$(dirname "$0")/r19_round1.sh" E data.rephrase=8
