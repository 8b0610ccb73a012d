"""Schema-1 checkpoints convert once to schema 2: same weights bit for bit, same answers; the loader names the command.

tests/data/palme_schema1/ is a tiny schema-1 checkpoint written by the code of commit eb6632b (every
object feature on, every weight perturbed; tests/data/make_palme_schema1.py), with the prompts it was
asked and the last-position logits and greedy answers that code gave.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from agent.model import PalmE
from agent.model.convert import convert_checkpoint, main, renamed
from agent.prompts import Example, Prompt

DATA = Path(__file__).resolve().parent / "data" / "palme_schema1"
SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "palme-tiny"
TOKENS = ["image", "object", "robot"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("convert") / "schema2"
    assert main([str(DATA), str(out)]) == 0
    return out


def _expected() -> tuple[list[Example], np.ndarray, list[str]]:
    meta = json.loads((DATA / "expected.json").read_text())
    arrays = np.load(DATA / "expected.npz")
    examples = []
    for i, parts in enumerate(meta["prompts"]):
        ex = Example(Prompt._of(parts))
        for key in ("image", "objects", "robot", "zones"):
            if f"{i}_{key}" in arrays:
                setattr(ex, key, arrays[f"{i}_{key}"])
        examples.append(ex)
    return examples, arrays["logits"], meta["answers"]


def _last_logits(model: PalmE, examples: list[Example]) -> torch.Tensor:
    with torch.no_grad():
        batch = model.collate(examples, train=False)
        return model.llm(inputs_embeds=model.embed(batch), attention_mask=batch["attention_mask"],
                         position_ids=batch["position_ids"]).logits[:, -1]


def test_a_converted_checkpoint_loads_and_answers_as_the_schema_1_code_did(converted):
    model = PalmE.from_pretrained(converted)
    assert model.config.state.features == ["words", "size_word", "words_above", "words_below", "zone_words"]
    assert model.config.prompt.history_window == 2 and model.config.llm.hidden == 16
    examples, logits, answers = _expected()
    torch.testing.assert_close(_last_logits(model, examples), torch.from_numpy(logits), rtol=0, atol=1e-5)
    assert model.generate(examples, max_new_tokens=6) == answers
    # every feature with weights takes part in those logits: without it they differ
    for name in ("words_above", "words_below", "zone_words"):
        with torch.no_grad():
            saved = model.object_features[name].map.weight.clone()
            model.object_features[name].map.weight.zero_()
            assert not torch.allclose(_last_logits(model, examples), torch.from_numpy(logits), atol=1e-4), name
            model.object_features[name].map.weight.copy_(saved)


def test_conversion_renames_every_weight_and_changes_no_value(converted):
    with safe_open(str(DATA / "model.safetensors"), "pt") as old, safe_open(str(converted / "model.safetensors"),
                                                                           "pt") as new:
        names = {renamed(k, TOKENS): k for k in old.keys()}  # noqa: SIM118 - safe_open is not a Mapping
        assert sorted(names) == sorted(new.keys())
        assert "object_features.words_above.map.weight" in names and "encoders.image.vision.backbone." in "".join(names)
        for key, old_key in names.items():
            a, b = old.get_tensor(old_key), new.get_tensor(key)
            assert a.dtype == b.dtype and torch.equal(a, b), key
    for name in ("tokenizer.json", "tokenizer_config.json", "expected.json", "expected.npz"):
        assert (converted / name).read_bytes() == (DATA / name).read_bytes()  # every token keeps its id
    meta = json.loads((converted / "config.json").read_text())
    old = json.loads((DATA / "config.json").read_text())
    assert meta["schema_version"] == 2 and meta["llm_config"] == old["llm_config"]
    assert set(meta["palme"]) == {"name", "seed", "prompt", "llm", "vision", "state", "lora"}


def test_the_loader_refuses_schema_1_in_one_line_naming_the_command():
    with pytest.raises(ValueError) as err:
        PalmE.from_pretrained(DATA)
    message = str(err.value)
    assert "\n" not in message and "schema_version 1" in message
    assert f"python -m agent.model.convert {DATA} NEW_FOLDER" in message


def test_in_place_conversion_keeps_the_other_files(tmp_path):
    folder = Path(shutil.copytree(DATA, tmp_path / "ckpt"))
    (folder / "README.md").write_text("model card")
    convert_checkpoint(folder, folder)
    assert (folder / "README.md").read_text() == "model card" and (folder / "expected.json").is_file()
    assert PalmE.from_pretrained(folder).config.llm.hidden == 16
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".convert-")]  # no work folder left


def test_what_cannot_be_converted_is_refused_in_one_line(tmp_path, capsys):
    assert main([str(SHIPPED), str(tmp_path / "again")]) == 2  # schema 2 already
    assert "only schema 1 converts" in capsys.readouterr().err
    folder = Path(shutil.copytree(DATA, tmp_path / "variant"))
    meta = json.loads((folder / "config.json").read_text())
    meta["palme"]["zone_tokens"] = True
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="palme.zone_tokens is on, a variant schema 2 removed"):
        convert_checkpoint(folder, tmp_path / "out")
    meta["palme"] = {**meta["palme"], "zone_tokens": False, "obj_wrds": True}
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"palme has keys \['obj_wrds'\] that no schema-1 PalmEConfig had"):
        convert_checkpoint(folder, tmp_path / "out")
    (tmp_path / "taken").mkdir()
    assert main([str(DATA), str(tmp_path / "taken")]) == 2
    assert "exists; give a new folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
