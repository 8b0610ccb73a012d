"""Issue #17, checkpoints: loading never runs code from the folder, and every broken checkpoint is refused in one line.

Items: 1 (a checkpoint's `auto_map` would make transformers run a Python file from it), 2 (sizes in
config.json trusted before the weights' shapes), 3 (NaN weights loaded silently), 4 (broken files
gave cryptic errors) and the loader part of 5 (checkpoints that cannot be loaded). Each test starts
from a copy of the shipped checkpoints/palme-tiny with the issue's edit.
"""

from __future__ import annotations

import json
import os
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
from agent.model.config import PromptConfig
from agent.model.tokenizer import load_tokenizer
from agent.model.tokens import all_placeholders
from agent.planners import model_dir
from agent.prompts import Example, PromptBuilder
from training.checkpoint import resolve_model_folder

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "palme-tiny"
_SHIPPED_LLM = json.loads((SHIPPED / "config.json").read_text())["llm_config"]
_SHIPPED_ADDED = json.loads((SHIPPED / "tokenizer.json").read_text())["added_tokens"]
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
    llm = {"hidden": 32, "layers": 1, "heads": 2, "kv_heads": 2, "intermediate": 64, "vocab_size": 400}
    vision = {"hidden": 16, "layers": 1, "heads": 2, "intermediate": 32, "image_size": 16, "patch_size": 8}
    source = make_model("palme-small", llm=llm, vision=vision, state={"hidden": 32})
    lm = tmp_path / "lm"
    source.llm.save_pretrained(lm)
    source.tokenizer.save_pretrained(lm)
    (lm / "evil_tok.py").write_text(EVIL_CODE.format(marker=str(marker)))
    _edit(lm / "config.json", lambda c: c.update(auto_map={"AutoModelForCausalLM": "evil_tok.EvilTokenizer"}))
    with pytest.raises(ValueError, match=r"lm/config\.json: key auto_map names Python code"):
        make_model("palme-small", llm={**llm, "backbone": "local", "path": str(lm)}, vision=vision)
    vit = tmp_path / "vit"
    ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       image_size=16, patch_size=8)).save_pretrained(vit)
    (vit / "preprocessor_config.json").write_text(json.dumps({"auto_map": {"AutoImageProcessor": "evil_tok.P"}}))
    with pytest.raises(ValueError, match=r"vit/preprocessor_config\.json: key auto_map names Python code"):
        make_model("palme-small", llm=llm, vision={**vision, "backbone": "local", "path": str(vit)})
    (vit / "preprocessor_config.json").unlink()
    _edit(vit / "config.json", lambda c: c.update(model_type="bert"))
    with pytest.raises(ValueError, match=r"vit/config\.json: config\.model_type \"bert\" \(str\) is not supported"):
        make_model("palme-small", llm=llm, vision={**vision, "backbone": "local", "path": str(vit)})
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
        extra = {"palme-collect": [f"out={where / 'data'}"]}.get(prog, [])  # palme-train: hydra.run.dir is its run folder
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
    prompt = PromptBuilder(PromptConfig(tokens=[])).planning("stack the red cube on the blue cube", [], 0)
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
    assert all(ours.convert_tokens_to_ids(p) == auto.convert_tokens_to_ids(p) for p in all_placeholders())


# ---------------------------------------------------------------------------------------------
# item 2: sizes in config.json checked against the weights before anything is allocated


@pytest.mark.parametrize("section,key,value,names", [
    ("llm_config", "vocab_size", 4_000_000, ["model.safetensors does not fit config.json", "lm_head.weight",
                                              f"[{_SHIPPED_LLM['vocab_size']}, {_SHIPPED_LLM['hidden_size']}] in the file",
                                              f"[4000000, {_SHIPPED_LLM['hidden_size']}]"]),
    ("llm_config", "num_hidden_layers", 100_000, ["config.json: llm_config.num_hidden_layers is 100000",
                                                  (f"holds at most {_SHIPPED_LLM['num_hidden_layers']} layers in a stack "
                                                   f"(llm.model.layers: {_SHIPPED_LLM['num_hidden_layers']}")]),
    ("palme.state", "hidden", 3_000_000, ["model.safetensors does not fit config.json", "encoders.object.mlp.0"]),
])
def test_sizes_are_checked_against_the_weights_before_they_are_allocated(ckpt, section, key, value, names):
    def edit(c):
        part = c
        for name in section.split("."):
            part = part[name]
        part[key] = value

    _edit(ckpt / "config.json", edit)
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
    tensors["encoders.image.projector.0.weight"][3, 5] = value
    save_file(tensors, str(weights), metadata=meta)
    message = _refusal(ckpt)
    assert message.startswith(f"{weights}: tensor encoders.image.projector.0.weight ") and says in message, message


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
    "llm_hidden-big": ("config.json", lambda c: c["palme"]["llm"].update(hidden="big"),
                       ["config.json: palme.llm.hidden must be an integer, got \"big\" (str)"]),
    "bool-for-int": ("config.json", lambda c: c["palme"]["state"].update(tokens_per_object=True),
                     ["palme.state.tokens_per_object must be an integer, got true (bool)"]),
    "int-for-bool": ("config.json", lambda c: c["palme"]["prompt"].update(entity_referral=1),
                     ["palme.prompt.entity_referral must be true or false, got 1 (int)"]),
    "list-length": ("config.json", lambda c: c["palme"]["vision"].update(image_mean=[0.5, 0.5]),
                    ["palme.vision.image_mean must hold 3 numbers (R, G, B), got 2"]),
    "unknown-palme-key": ("config.json", lambda c: c["palme"].update(stat={}),
                          ["palme has unknown keys ['stat']", "did you mean 'state'?"]),
    "unknown-section-key": ("config.json", lambda c: c["palme"]["state"].update(tokens_per_objct=2),
                            ["palme.state has unknown keys ['tokens_per_objct']", "did you mean 'tokens_per_object'?"]),
    "section-not-object": ("config.json", lambda c: c["palme"].update(llm="scratch"),
                           ["palme.llm must be a JSON object (the model's LLMConfig), got \"scratch\" (str)"]),
    "unknown-feature": ("config.json", lambda c: c["palme"]["state"].update(features=["words", "zone_tokens"]),
                        ["palme.state.features[1] 'zone_tokens' is not one of ['board_words', ", "'near_words', 'size_word'"]),
    "unknown-token-type": ("config.json", lambda c: c["palme"]["prompt"].update(tokens=["image", "zone"]),
                           ["palme.prompt.tokens[1] 'zone' is not one of ['image', 'instruction', 'object', 'robot']"]),
    "feature-order": ("config.json", lambda c: c["palme"]["state"].update(features=["size_word", "words"]),
                      ["object feature 'size_word' needs ['words'] before it"]),
    "llm-model-type": ("config.json", lambda c: c["llm_config"].update(model_type="evil_lm"),
                       ["llm_config.model_type \"evil_lm\" (str) is not supported"]),
    "llm-field-type": ("config.json", lambda c: c["llm_config"].update(hidden_size="big"),
                       ["llm_config is not a valid llama config", "'hidden_size' expected int, got str"]),
    "vision-config-for-scratch": ("config.json", lambda c: c.update(vision_config={"model_type": "vit"}),
                                  ["vision_config must be null for palme.vision.backbone 'scratch'"]),
    "version": ("config.json", lambda c: c.update(schema_version=3),
                ["does not match this code: schema_version: checkpoint has 3, this code expects 2"]),
    "schema-1": ("config.json", lambda c: c.update(schema_version=1),
                 ["has schema_version 1 and this code reads 2: convert it once with `python -m agent.model.convert"]),
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
        tensors["encoders.image.projector.2.weight"] = tensors["encoders.image.projector.2.weight"][:-1].clone()
        save_file(tensors, str(weights), metadata=meta)
    return path


@pytest.mark.parametrize("kind,says", [
    ("plain-file", "is a file, not a folder"), ("empty-folder", "is missing config.json, model.safetensors"),
    ("no-safetensors", "is missing model.safetensors"),
    ("truncated-safetensors", "model.safetensors is not a readable safetensors file"),
    ("wrong-shape", ("tensor encoders.image.projector.2.weight has shape [127, 128] in the file but config.json "
                     "implies [128, 128]")),
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
        name = "encoders.image.projector.0.weight"
        assert torch.equal(model.state_dict()[name], f.get_tensor(name))


# ---------------------------------------------------------------------------------------------
# review of #17: special files, big inputs, hostile tokenizer pipelines, ambiguous ids, huge integers

# Run in a child process: a regression would block on the FIFO or read /dev/zero until memory runs out; the
# child stops itself after 60 s and cannot map more than 1 GiB beyond what its imports took.
_SPECIAL_FILES_CHILD = """
import json, resource, sys, time
from agent.model import PalmE
pages = int(open("/proc/self/statm").read().split()[0])
vm = pages * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (vm + 2**30, vm + 2**30))
resource.setrlimit(resource.RLIMIT_CPU, (60, 60))
out = {}
for folder in sys.argv[1:]:
    start = time.perf_counter()
    try:
        PalmE.from_pretrained(folder)
        out[folder] = ["loaded", 0.0]
    except ValueError as err:
        out[folder] = [str(err), time.perf_counter() - start]
print(json.dumps(out))
"""


def _special(kind: str, folder: Path) -> list[str]:
    """The reviewer's special-file cases on a copy of the shipped checkpoint; what the refusal must say."""
    if kind == "fifo-extra-json":
        os.mkfifo(folder / "readme.json")
        return ["readme.json is a FIFO (named pipe), not a regular file"]
    if kind == "dev-zero-json":
        (folder / "notes.json").symlink_to("/dev/zero")
        return ["notes.json is a character device, not a regular file"]
    if kind == "fifo-config":
        (folder / "config.json").unlink()
        os.mkfifo(folder / "config.json")
        return ["config.json is a FIFO (named pipe)"]
    if kind == "fifo-weights":
        (folder / "model.safetensors").unlink()
        os.mkfifo(folder / "model.safetensors")
        return ["model.safetensors is a FIFO (named pipe)"]
    if kind == "sparse-2gb-config":  # valid JSON followed by NULs, 2 GB (sparse: no disk used)
        with open(folder / "config.json", "r+b") as f:
            f.truncate(2**31)
        return ["config.json is 2,147,483,648 bytes, over the 16,777,216-byte cap"]
    assert kind == "sparse-100mb-tokenizer"
    with open(folder / "tokenizer.json", "r+b") as f:
        f.truncate(100 * 2**20)
    return ["tokenizer.json is 104,857,600 bytes, over the 67,108,864-byte cap"]


SPECIAL = ["fifo-extra-json", "dev-zero-json", "fifo-config", "fifo-weights", "sparse-2gb-config",
           "sparse-100mb-tokenizer"]


def test_fifos_devices_and_huge_files_in_a_checkpoint_are_refused_before_they_are_read(tmp_path):
    folders = {kind: Path(shutil.copytree(SHIPPED, tmp_path / kind)) for kind in SPECIAL}
    says = {kind: _special(kind, folder) for kind, folder in folders.items()}
    proc = subprocess.run([sys.executable, "-c", _SPECIAL_FILES_CHILD, *map(str, folders.values())],
                          cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for kind, folder in folders.items():
        message, seconds = results[str(folder)]
        assert str(folder) in message and all(s in message for s in says[kind]), (kind, message)
        assert "\n" not in message and seconds < 1.0, (kind, seconds)


@pytest.mark.parametrize("padding", ["zero-size", "zero-size-layers", "one-element-layers"])
def test_10000_layers_padded_with_tiny_tensors_are_refused_in_well_under_a_second(ckpt, padding):
    """The reviewer's N=10000: config.json claims 10000 LM layers and the file is padded with 10000 tensors
    (zero-size ones, or named as layers) so that counting tensors would let the model be built (118 s)."""
    n = 10_000
    _edit(ckpt / "config.json", lambda c: (c["palme"]["llm"].update(layers=n), c["llm_config"].update(num_hidden_layers=n)))
    with safe_open(str(ckpt / "model.safetensors"), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    for i in range(n):
        if padding == "zero-size":
            tensors[f"pad{i}"] = torch.zeros(0)
        else:
            tensors[f"llm.model.layers.{i}.pad"] = torch.zeros(0 if padding == "zero-size-layers" else 1)
    save_file(tensors, str(ckpt / "model.safetensors"), metadata=meta)
    start = time.perf_counter()
    message = _refusal(ckpt)
    seconds = time.perf_counter() - start
    assert "config.json: llm_config.num_hidden_layers is 10000" in message, message
    says = "holds at most 3 layers in a stack (llm.model.layers: 3" if padding != "one-element-layers" else \
        "layers of width 128, at least 163,840,000 weights"
    assert says in message and seconds < 2.0, (message, seconds)


def _hostile_pipeline(t: dict) -> None:
    """The reviewer's pre-tokenizer: a Split with a backtracking regex before the byte-level one."""
    split = {"type": "Split", "pattern": {"Regex": "(a+)+$"}, "behavior": "Isolated", "invert": False}
    t["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [split, t["pre_tokenizer"]]}


PIPELINES = {  # case: (edit of tokenizer.json, what the refusal must say)
    "split-regex": (_hostile_pipeline, ("tokenizer.json: pre_tokenizer is Sequence; this model's tokenizer has "
                                        "ByteLevel there")),
    "replace-normalizer": (lambda t: t.update(normalizer={"type": "Replace", "pattern": {"String": "cube"},
                                                          "content": "<img>"}),
                           "tokenizer.json: normalizer is Replace"),
    "sequence-normalizer": (lambda t: t.update(normalizer={"type": "Sequence", "normalizers": [
        {"type": "NFC"}, {"type": "Replace", "pattern": {"Regex": "(a+)+$"}, "content": "x"}]}),
                            "tokenizer.json: normalizer.normalizers holds Replace"),
    "wordpiece-decoder": (lambda t: t.update(decoder={"type": "WordPiece", "prefix": "##", "cleanup": True}),
                          "tokenizer.json: decoder is WordPiece"),
    "bpe-dropout": (lambda t: t["model"].update(dropout=0.5), "tokenizer.json: model.dropout is 0.5"),
}


@pytest.mark.parametrize("case", list(PIPELINES))
def test_a_tokenizer_pipeline_this_project_does_not_write_is_refused_naming_the_key(ckpt, case):
    edit, says = PIPELINES[case]
    _edit(ckpt / "tokenizer.json", edit)
    message = _refusal(ckpt)
    assert str(ckpt) in message and says in message, message


def _panics(encode) -> bool:
    try:
        encode("a" * 64 + "b")
    except BaseException as err:  # noqa: BLE001 - looking for the Rust panic itself
        return type(err).__name__ == "PanicException"
    return False


def test_another_models_tokenizer_that_panics_is_refused_at_load_and_a_panic_on_text_is_a_value_error(ckpt):
    """llm=local / smollm2 tokenizers keep their own pipelines (own=False); one that panics on a probe text is
    refused when loaded, and a panic on later text becomes a ValueError (not a BaseException that escapes)."""
    from tokenizers import Tokenizer

    from agent.model.tokenizer import encode_text

    _edit(ckpt / "tokenizer.json", _hostile_pipeline)
    backend = Tokenizer.from_file(str(ckpt / "tokenizer.json"))
    assert _panics(backend.encode)  # the reviewer's input really panics the Rust library
    with pytest.raises(ValueError, match=r"tokenizer\.json: the tokenizer fails on the text 'aaaa.*Regex search error"):
        load_tokenizer(ckpt, own=False)
    shipped = load_tokenizer(SHIPPED)
    shipped.backend_tokenizer.pre_tokenizer = backend.pre_tokenizer  # the same pipeline on a loaded tokenizer
    with pytest.raises(ValueError, match=r"the tokenizer fails on the text 'aaaa"):
        encode_text(shipped, "a" * 64 + "b")


def test_a_too_large_vocabulary_is_named_also_before_the_instruction_encoder_was_loaded(ckpt):
    """The refused config is built on the meta device to name the tensor: the frozen sentence encoder (an
    instruction token) then loads on the CPU, not "from_pretrained with a meta device" (was: only once cached)."""
    from agent.model.text_encoder import sentence_states

    _edit(ckpt / "config.json", lambda c: c["llm_config"].update(vocab_size=4_000_000))
    sentence_states.cache_clear()  # as in a fresh process
    message = _refusal(ckpt)
    assert "does not fit config.json: tensor llm.lm_head.weight has shape" in message, message


@pytest.mark.parametrize("case,says", [
    ("vocab-reuses-a-placeholder-id", "model.vocab gives the id 2 to both '<img>' and 'Ġthe'"),
    ("added-token-twice", "added_tokens list {last[content]!r} twice (ids {last[id]} and {last[id]})"),
    ("added-token-takes-a-vocab-id", "added_tokens[{n}] 'red' has the id 400, which model.vocab gives to"),
])
def test_ambiguous_token_ids_are_refused_on_every_load(ckpt, case, says):
    """The reviewer's vocab["Ġthe"] = 2 (the id of <img>) loaded 2 times in 6: the refusal is now deterministic."""
    def edit(t):
        if case == "vocab-reuses-a-placeholder-id":
            t["model"]["vocab"]["Ġthe"] = 2
        elif case == "added-token-twice":
            t["added_tokens"].append(dict(t["added_tokens"][-1]))
        else:
            t["added_tokens"].append({**t["added_tokens"][-1], "id": 400, "content": "red", "special": False})

    _edit(ckpt / "tokenizer.json", edit)
    says = says.format(last=_SHIPPED_ADDED[-1], n=len(_SHIPPED_ADDED))  # the appended entry is the last one
    messages = {_refusal(ckpt) for _ in range(6)}
    assert len(messages) == 1 and says in (message := messages.pop()), message


def test_an_integer_of_5000_digits_in_config_json_is_refused_naming_the_file(ckpt):
    path = ckpt / "config.json"
    path.write_text(path.read_text().replace('"seed": 0', '"seed": ' + "9" * 5000))
    message = _refusal(ckpt)
    assert message.startswith(f"{path} is not valid JSON: Exceeds the limit (4300 digits)"), message
