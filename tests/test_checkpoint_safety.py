"""Issue #17, checkpoints: loading never runs code from the folder, and every broken checkpoint is refused in one line.

Items: 1 (a checkpoint's `auto_map` would make transformers run a Python file from it), 2 (sizes in
config.json trusted before the weights' shapes), 3 (NaN weights loaded silently), 4 (broken files
gave cryptic errors) and the loader part of 5 (checkpoints that cannot be loaded). Each test starts
from a copy of the shipped checkpoints/palme-tiny with the issue's edit.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoTokenizer

from agent.model import PalmE, make_model
from agent.model.checkpoint_checks import refuse_code
from agent.model.tokenizer import load_tokenizer
from agent.planners import model_dir
from agent.prompts import PLACEHOLDERS, Example, PromptBuilder
from training.checkpoint import resolve_model_folder

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "palme-tiny"
EVIL_CODE = """from pathlib import Path
Path({marker!r}).write_text("the checkpoint's code ran")
from transformers import PreTrainedTokenizerFast
class EvilTokenizer(PreTrainedTokenizerFast):
    pass
"""


@pytest.fixture
def ckpt(tmp_path) -> Path:
    """A copy of the shipped checkpoint."""
    return Path(shutil.copytree(SHIPPED, tmp_path / "ckpt"))


def _edit(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _refusal(folder: Path) -> str:
    """The one-line ValueError message PalmE.from_pretrained refuses `folder` with."""
    with pytest.raises(ValueError) as err:
        PalmE.from_pretrained(folder)
    message = str(err.value)
    assert message and "\n" not in message, message
    return message


def _plant_code(folder: Path, marker: Path) -> None:
    """The issue's item 1: a Python file in the folder and tokenizer_config.json pointing AutoTokenizer at it."""
    (folder / "evil_tok.py").write_text(EVIL_CODE.format(marker=str(marker)))
    _edit(folder / "tokenizer_config.json",
          lambda c: c.update(auto_map={"AutoTokenizer": ["evil_tok.EvilTokenizer", None]}))


@pytest.fixture
def no_prompt(monkeypatch):
    """Any question on stdin (transformers' "Do you wish to run the custom code?") fails the test."""
    monkeypatch.setattr("builtins.input", lambda *a: pytest.fail(f"asked the user: {a}"))


# ---------------------------------------------------------------------------------------------
# item 1: no code from a model folder, ever


CODE_PLACES = {  # file, edit, the key the message must name
    "tokenizer_config-auto_map": ("tokenizer_config.json",
                                  lambda c: c.update(auto_map={"AutoTokenizer": ["evil_tok.EvilTokenizer", None]}),
                                  "auto_map"),
    "tokenizer_config-class": ("tokenizer_config.json", lambda c: c.update(tokenizer_class="EvilTokenizer"),
                               "tokenizer_class"),
    "config-llm_config-auto_map": ("config.json",
                                   lambda c: c["llm_config"].update(auto_map={"AutoModelForCausalLM": "evil_tok.M"}),
                                   "llm_config.auto_map"),
    "generation_config": ("generation_config.json", lambda c: c.update(custom_pipelines={"x": {"impl": "evil_tok.P"}}),
                          "custom_pipelines"),
    "preprocessor_config": ("preprocessor_config.json",
                            lambda c: c.update(auto_map={"AutoImageProcessor": "evil_tok.P"}), "auto_map"),
}


@pytest.mark.parametrize("place", list(CODE_PLACES))
def test_code_named_by_any_json_of_the_checkpoint_is_refused_without_asking(ckpt, tmp_path, no_prompt, place):
    name, edit, key = CODE_PLACES[place]
    marker = tmp_path / "MARKER"
    (ckpt / "evil_tok.py").write_text(EVIL_CODE.format(marker=str(marker)))
    if not (ckpt / name).exists():
        (ckpt / name).write_text("{}")
    _edit(ckpt / name, edit)
    message = _refusal(ckpt)
    assert f"{ckpt / name}:" in message and key in message
    assert not marker.exists()


def test_local_llm_and_vision_folders_that_name_code_are_refused(tmp_path, no_prompt):
    from transformers import ViTConfig, ViTModel

    marker = tmp_path / "MARKER"
    tiny = {"llm_hidden": 32, "llm_layers": 1, "llm_heads": 2, "llm_kv_heads": 2, "llm_intermediate": 64,
            "vision_hidden": 16, "vision_layers": 1, "vision_heads": 2, "vision_intermediate": 32,
            "image_size": 16, "patch_size": 8, "state_hidden": 32, "vocab_size": 400}
    source = make_model("palme-tiny", **tiny)
    lm = tmp_path / "lm"
    source.llm.save_pretrained(lm)
    source.tokenizer.save_pretrained(lm)
    (lm / "evil_tok.py").write_text(EVIL_CODE.format(marker=str(marker)))
    _edit(lm / "config.json", lambda c: c.update(auto_map={"AutoModelForCausalLM": "evil_tok.EvilTokenizer"}))
    with pytest.raises(ValueError, match=r"lm/config\.json: key auto_map names Python code"):
        make_model("palme-tiny", **tiny, llm="local", llm_path=str(lm))
    vit = tmp_path / "vit"
    ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       image_size=16, patch_size=8)).save_pretrained(vit)
    (vit / "preprocessor_config.json").write_text(json.dumps({"auto_map": {"AutoImageProcessor": "evil_tok.P"}}))
    with pytest.raises(ValueError, match=r"vit/preprocessor_config\.json: key auto_map names Python code"):
        make_model("palme-tiny", **tiny, vision="local", vision_path=str(vit))
    (vit / "preprocessor_config.json").unlink()
    _edit(vit / "config.json", lambda c: c.update(model_type="bert"))
    with pytest.raises(ValueError, match=r"vit/config\.json: config\.model_type \"bert\" \(str\) is not supported"):
        make_model("palme-tiny", **tiny, vision="local", vision_path=str(vit))
    assert not marker.exists()


CLIS = {  # prog: (module, arguments beyond checkpoint / output locations)
    "palme-run": ("agent.cli.run", ["planner=palme", "task=grasp", "video=false"]),
    "palme-eval": ("agent.evaluate", ["tasks=[grasp]", "episodes=1", "progress=false"]),
    "palme-collect": ("training.collect", ["planner=palme", "task=grasp", "episodes=1", "progress=false"]),
    "palme-train": ("training.train", []),
}


def test_every_cli_that_loads_a_model_refuses_the_planted_code_and_asks_nothing(ckpt, tmp_path):
    """The issue's reproduction through the real CLIs, "y" on stdin: exit 2, one line, the file ran never."""
    marker = tmp_path / "MARKER"
    _plant_code(ckpt, marker)
    procs = {}
    for prog, (module, args) in CLIS.items():  # started together: each spends seconds importing
        where = tmp_path / prog
        extra = {"palme-collect": [f"out={where / 'data'}"], "palme-train": [f"output_dir={where}"]}.get(prog, [])
        checkpoint = f"init_from={ckpt}" if prog == "palme-train" else f"checkpoint={ckpt}"
        procs[prog] = subprocess.Popen(
            [sys.executable, "-m", module, *args, checkpoint, *extra, f"hydra.run.dir={where / 'run'}"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = {prog: p.communicate("y\n", timeout=300) for prog, p in procs.items()}
    assert not marker.exists()
    for prog, (_, stderr) in results.items():
        lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("pybullet build time")]
        assert procs[prog].returncode == 2, f"{prog}: exit {procs[prog].returncode}: {stderr[-2000:]}"
        assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), f"{prog}: {stderr[-2000:]}"
        assert f"{ckpt / 'tokenizer_config.json'}: key auto_map" in lines[0] and "Traceback" not in stderr


def test_the_shipped_checkpoint_names_no_code_and_its_saved_copy_loads(ckpt, tmp_path):
    refuse_code(SHIPPED)
    for path in SHIPPED.glob("*.json"):
        assert "auto_map" not in path.read_text() and "custom_pipelines" not in path.read_text(), path
    model = PalmE.from_pretrained(SHIPPED)
    model.save_pretrained(tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    refuse_code(tmp_path / "saved")
    again = PalmE.from_pretrained(tmp_path / "saved")
    prompt = PromptBuilder(use_image=False, use_state=False).planning("stack the red cube on the blue cube", [], 0)
    assert again.generate([Example(prompt)]) == model.generate([Example(prompt)])


def test_the_tokenizer_read_as_data_behaves_as_autotokenizer_on_the_shipped_checkpoint():
    ours = load_tokenizer(SHIPPED)
    auto = AutoTokenizer.from_pretrained(SHIPPED, trust_remote_code=False, local_files_only=True)  # trusted here
    assert type(ours) is type(auto)
    assert ours.get_vocab() == auto.get_vocab() and len(ours) == len(auto)
    assert (ours.eos_token, ours.pad_token, ours.eos_token_id, ours.pad_token_id) == ("<eos>", "<pad>", 1, 0)
    assert (ours.eos_token_id, ours.pad_token_id, ours.bos_token, ours.unk_token) == (
        auto.eos_token_id, auto.pad_token_id, auto.bos_token, auto.unk_token)
    assert ours.all_special_tokens == auto.all_special_tokens and ours.all_special_ids == auto.all_special_ids
    assert ours.added_tokens_decoder == auto.added_tokens_decoder
    assert (ours.model_max_length, ours.padding_side, ours.truncation_side) == (
        auto.model_max_length, auto.padding_side, auto.truncation_side)
    texts = ["pick up the red cube", " place the small cyan star in the green zone", "done",
             "Given <img>. Object 1 is <obj_1>. Zones: <zone_2>. Robot: <robot>. Task: x. Step 1.",
             "Ünïcödé ✓ 😀 tabs\tand\nnewlines <eos><pad>", ""]
    for text in texts:
        for kwargs in ({}, {"add_special_tokens": False}, {"split_special_tokens": True}):
            ids = ours.encode(text, **kwargs)
            assert ids == auto.encode(text, **kwargs), (text, kwargs)
            assert ours.decode(ids, skip_special_tokens=True) == auto.decode(ids, skip_special_tokens=True)
            assert ours.decode(ids) == auto.decode(ids)
    batch = ours(texts[:3], padding=True)
    assert batch["input_ids"] == auto(texts[:3], padding=True)["input_ids"]
    assert all(ours.convert_tokens_to_ids(p) == auto.convert_tokens_to_ids(p) for p in PLACEHOLDERS)


# ---------------------------------------------------------------------------------------------
# item 2: sizes in config.json checked against the weights before anything is allocated


@pytest.mark.parametrize("section,key,value,names", [
    ("llm_config", "vocab_size", 4_000_000, ["model.safetensors does not fit config.json", "lm_head.weight",
                                              "[711, 128] in the file", "[4000000, 128]"]),
    ("llm_config", "num_hidden_layers", 100_000, ["config.json: llm_config.num_hidden_layers is 100000",
                                                  "holds only 86 tensors"]),
    ("palme", "state_hidden", 3_000_000, ["model.safetensors does not fit config.json", "object_encoder.mlp.0"]),
])
def test_sizes_are_checked_against_the_weights_before_they_are_allocated(ckpt, section, key, value, names):
    _edit(ckpt / "config.json", lambda c: c[section].update({key: value}))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    start = time.perf_counter()
    message = _refusal(ckpt)
    seconds = time.perf_counter() - start
    assert all(n in message for n in names), message
    assert seconds < 1.0, f"refused after {seconds:.1f} s"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200 * 1024  # never GBs


# ---------------------------------------------------------------------------------------------
# item 3: NaN / inf weights


@pytest.mark.parametrize("value,says", [(float("nan"), "holds NaN values (1 of"), (float("inf"), "holds inf values"),
                                        (3e38, "magnitude 3e+38")])
def test_non_finite_or_absurd_weights_are_refused_naming_the_tensor(ckpt, value, says):
    weights = ckpt / "model.safetensors"
    with safe_open(str(weights), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    tensors["projector.0.weight"][3, 5] = value
    save_file(tensors, str(weights), metadata=meta)
    message = _refusal(ckpt)
    assert message.startswith(f"{weights}: tensor projector.0.weight ") and says in message, message


# ---------------------------------------------------------------------------------------------
# item 4: broken files, one line naming the file, the key and what was expected


def _random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(4096))


BROKEN_FILES = {  # case: (file, edit of the parsed JSON or of the file, what the message must say)
    "tokenizer-random-bytes": ("tokenizer.json", _random_bytes, ["tokenizer.json is not UTF-8 text", "JSON"]),
    "tokenizer-structure": ("tokenizer.json", lambda t: t.pop("added_tokens"),
                            ["tokenizer.json: added_tokens must be a JSON list", "no such key"]),
    "tokenizer-placeholders": ("tokenizer.json", lambda t: t.update(added_tokens=t["added_tokens"][:2]),
                               ["tokenizer.json: added_tokens lacks the special placeholder tokens", "'<img>'"]),
    "eos-not-in-vocab": ("tokenizer_config.json", lambda c: c.update(eos_token="<end>"),
                         ["tokenizer_config.json: eos_token must name a token of tokenizer.json", '"<end>"']),
    "no-palme-section": ("config.json", lambda c: c.pop("palme"), ["config.json: missing sections ['palme']"]),
    "llm_hidden-big": ("config.json", lambda c: c["palme"].update(llm_hidden="big"),
                       ["config.json: palme.llm_hidden must be an integer, got \"big\" (str)"]),
    "bool-for-int": ("config.json", lambda c: c["palme"].update(obj_tokens=True),
                     ["palme.obj_tokens must be an integer, got true (bool)"]),
    "int-for-bool": ("config.json", lambda c: c["palme"].update(use_image=1),
                     ["palme.use_image must be true or false, got 1 (int)"]),
    "list-length": ("config.json", lambda c: c["palme"].update(image_mean=[0.5, 0.5]),
                    ["palme.image_mean must hold 3 numbers (R, G, B), got 2"]),
    "unknown-palme-key": ("config.json", lambda c: c["palme"].update(obj_token=2),
                          ["palme has unknown keys ['obj_token']", "did you mean 'obj_tokens'?"]),
    "llm-model-type": ("config.json", lambda c: c["llm_config"].update(model_type="evil_lm"),
                       ["llm_config.model_type \"evil_lm\" (str) is not supported"]),
    "llm-field-type": ("config.json", lambda c: c["llm_config"].update(hidden_size="big"),
                       ["llm_config is not a valid llama config", "'hidden_size' expected int, got str"]),
    "vision-config-for-scratch": ("config.json", lambda c: c.update(vision_config={"model_type": "vit"}),
                                  ["vision_config must be null for palme.vision 'scratch'"]),
    "version": ("config.json", lambda c: c.update(schema_version=2),
                ["does not match this code: schema_version: checkpoint has 2, this code expects 1"]),
}


@pytest.mark.parametrize("case", list(BROKEN_FILES))
def test_broken_files_are_refused_in_one_line_naming_file_and_key(ckpt, case):
    name, edit, says = BROKEN_FILES[case]
    if edit is _random_bytes:
        edit(ckpt / name)
    else:
        _edit(ckpt / name, edit)
    message = _refusal(ckpt)
    assert str(ckpt) in message and all(s in message for s in says), message


# ---------------------------------------------------------------------------------------------
# item 5 (loader part): what cannot be loaded is a one-line ValueError, never a model


def _unloadable(kind: str, tmp_path: Path) -> Path:
    if kind == "plain-file":
        (tmp_path / "model.bin").write_text("not a checkpoint")
        return tmp_path / "model.bin"
    if kind == "empty-folder":
        (tmp_path / "empty").mkdir()
        return tmp_path / "empty"
    path = Path(shutil.copytree(SHIPPED, tmp_path / kind))
    weights = path / "model.safetensors"
    if kind == "no-safetensors":
        weights.unlink()
    elif kind == "truncated-safetensors":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    else:  # wrong-shape
        with safe_open(str(weights), "pt") as f:
            meta = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        tensors["projector.2.weight"] = tensors["projector.2.weight"][:-1].clone()
        save_file(tensors, str(weights), metadata=meta)
    return path


@pytest.mark.parametrize("kind,says", [
    ("plain-file", "is a file, not a folder"), ("empty-folder", "is missing config.json, model.safetensors"),
    ("no-safetensors", "is missing model.safetensors"),
    ("truncated-safetensors", "model.safetensors is not a readable safetensors file"),
    ("wrong-shape", "tensor projector.2.weight has shape [127, 128] in the file but config.json implies [128, 128]"),
])
def test_unloadable_checkpoints_are_one_line_value_errors(tmp_path, kind, says):
    path = _unloadable(kind, tmp_path)
    assert says in _refusal(path)
    for resolve in (model_dir, resolve_model_folder):  # what planners and palme-train resolve a checkpoint with
        try:
            folder = resolve(path)
        except ValueError as err:
            assert str(path) in str(err) and "\n" not in str(err)
        else:
            assert says in _refusal(folder)


def test_a_normal_load_is_unchanged():
    model = PalmE.from_pretrained(SHIPPED)
    assert not model.training and model.tokenizer.eos_token_id == 1
    with safe_open(str(SHIPPED / "model.safetensors"), "pt") as f:
        assert torch.equal(model.state_dict()["projector.0.weight"], f.get_tensor("projector.0.weight"))
