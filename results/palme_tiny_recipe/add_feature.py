"""Add object features to a trained model (their learned parts start at zero, so its outputs are unchanged) and save
it as a model folder that `palme-train init_from=` fine-tunes (stop 35's instruction_words probe):

    python results/palme_tiny_recipe/add_feature.py MODEL_DIR OUT_DIR FEATURE [FEATURE ...]
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent.model.features import FeatureSetup, build_features
from agent.model.palme import PalmE

model = PalmE.from_pretrained(sys.argv[1])
if "instruction" not in model.encoders:
    sys.exit(f"{sys.argv[1]} has no instruction tokens (model.prompt.tokens): instruction_words needs them")
names = [*model.config.state.features, *sys.argv[3:]]
emb = model.llm.get_input_embeddings()
setup = FeatureSetup(emb.embedding_dim, model.tokenizer, emb.num_embeddings, model.encoders["instruction"].text)
new = build_features(names, setup)
for name in model.config.state.features:
    new[name] = model.object_features[name]
model.object_features = new
model.config.state.features = names
model.save_pretrained(sys.argv[2])
print("saved", sys.argv[2], names)
