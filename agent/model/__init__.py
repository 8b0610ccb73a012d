"""The PaLM-E model: `PalmE`, its `PalmEConfig` (presets in configs/model/), tokenizer training."""

from agent.model.config import SCHEMA_VERSION, STAGES, PalmEConfig, preset_names
from agent.model.palme import CHECKPOINT_FILES, IGNORE_INDEX, PalmE, make_model
from agent.model.tokenizer import train_tokenizer

__all__ = [
    "CHECKPOINT_FILES", "IGNORE_INDEX", "SCHEMA_VERSION", "STAGES", "PalmE", "PalmEConfig", "make_model",
    "preset_names", "train_tokenizer",
]
