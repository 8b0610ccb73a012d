"""benchmarks/instruction_reliance.py's word swap: whole words, both ways at once, the first letter's case kept."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from instruction_reliance import swap_words


def test_the_swap_exchanges_each_pair_in_one_pass_and_leaves_other_words_alone():
    text = "Left blocks together, keep the right side and the upright star; top left to bottom"
    assert swap_words(text, [("left", "right"), ("top", "bottom")]) == (
        "Right blocks together, keep the left side and the upright star; bottom right to top")


def test_a_text_without_the_words_is_unchanged():
    assert swap_words("push the red cube to the center", [("left", "right")]) == "push the red cube to the center"
