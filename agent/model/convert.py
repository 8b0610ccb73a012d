"""One-time conversion of a schema-1 PalmE checkpoint (flat config, old module names) to schema 2.

    python -m agent.model.convert SRC DST        # DST may be SRC: converted in place

Schema 1 (up to commit eb6632b) kept the model config flat (`llm_hidden`, `obj_words`, ...) and named
the modules `image_encoder`, `projector`, `object_encoder`, `robot_encoder`, `relation_above`,
`relation_below`, `relation_zone`. Schema 2 nests the config by part (`agent.model.config`), lists the
token types and the object features by name, and holds one encoder per token type
(`encoders.<type>`) and the features in `object_features.<name>`. Conversion renames, never recomputes:
every weight keeps its dtype, shape and bits; the tokenizer files (every token keeps its id) and any
other file of the folder (reports, train_config.json, a model card) are copied unchanged. The three
variants schema 2 removed (`zone_tokens`, `name_objects`, `obj_referral_words`) cannot be converted;
a checkpoint with one of them on is refused, naming it. Tensors of encoders a schema-1 model built but
never read (the image encoder of a `use_image: false` model, the state encoders of a `use_state: false`
one) are not carried over. The result is loaded with `PalmE.from_pretrained` (every check) before it
replaces anything.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file

from agent.model.checkpoint_checks import check_folder, one_line, read_json_object, refuse_code
from agent.model.config import SCHEMA_VERSION, PalmEConfig

# The schema-1 PalmEConfig's defaults (what a field missing from an old config.json meant).
SCHEMA1_DEFAULTS: dict[str, Any] = {
    "name": "palme-tiny", "seed": 0, "use_image": True, "use_state": True, "entity_referral": True,
    "zone_tokens": False, "history_window": 0, "name_objects": False, "llm": "scratch", "llm_path": "",
    "vocab_size": 1024, "llm_hidden": 256, "llm_layers": 4, "llm_heads": 4, "llm_kv_heads": 4,
    "llm_intermediate": 688, "max_positions": 1024, "attn_implementation": "sdpa", "vision": "scratch",
    "vision_path": "", "image_size": 64, "patch_size": 16, "vision_hidden": 128, "vision_layers": 4,
    "vision_heads": 4, "vision_intermediate": 256, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    "projector": "mlp", "obj_tokens": 1, "state_hidden": 256, "obj_words": False, "obj_size_words": False,
    "obj_relations": False, "zone_relations": False, "obj_referral_words": False, "stage": "full", "lora": False,
    "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "lora_targets": ["q_proj", "k_proj", "v_proj", "o_proj"],
}
REMOVED = ("zone_tokens", "name_objects", "obj_referral_words")  # never-shipped variants schema 2 dropped
# schema-1 key -> (section, schema-2 key); name, seed, the flags and stage are handled in `convert_config`
MOVED: dict[str, tuple[str, str]] = {
    "entity_referral": ("prompt", "entity_referral"), "history_window": ("prompt", "history_window"),
    "llm": ("llm", "backbone"), "llm_path": ("llm", "path"), "vocab_size": ("llm", "vocab_size"),
    "llm_hidden": ("llm", "hidden"), "llm_layers": ("llm", "layers"), "llm_heads": ("llm", "heads"),
    "llm_kv_heads": ("llm", "kv_heads"), "llm_intermediate": ("llm", "intermediate"),
    "max_positions": ("llm", "max_positions"), "attn_implementation": ("llm", "attn_implementation"),
    "vision": ("vision", "backbone"), "vision_path": ("vision", "path"), "image_size": ("vision", "image_size"),
    "patch_size": ("vision", "patch_size"), "vision_hidden": ("vision", "hidden"),
    "vision_layers": ("vision", "layers"), "vision_heads": ("vision", "heads"),
    "vision_intermediate": ("vision", "intermediate"), "image_mean": ("vision", "image_mean"),
    "image_std": ("vision", "image_std"), "projector": ("vision", "projector"),
    "obj_tokens": ("state", "tokens_per_object"), "state_hidden": ("state", "hidden"),
    "lora": ("lora", "enabled"), "lora_r": ("lora", "r"), "lora_alpha": ("lora", "alpha"),
    "lora_dropout": ("lora", "dropout"), "lora_targets": ("lora", "targets"),
}
FEATURE_FLAGS = (("obj_words", ["words"]), ("obj_size_words", ["size_word"]),  # in the order they were summed
                 ("obj_relations", ["words_above", "words_below"]), ("zone_relations", ["zone_words"]))
# schema-1 tensor name prefix -> schema-2 prefix; None: dropped (see `renamed`)
RENAMES: tuple[tuple[str, str], ...] = (
    ("image_encoder.", "encoders.image.vision."),
    ("projector.", "encoders.image.projector."),
    ("object_encoder.", "encoders.object."),
    ("robot_encoder.", "encoders.robot."),
    ("relation_above.", "object_features.words_above.map."),
    ("relation_below.", "object_features.words_below.map."),
    ("relation_zone.", "object_features.zone_words.map."),
    ("llm.", "llm."),
)
_TYPE_OF_PREFIX = {"encoders.image.": "image", "encoders.object.": "object", "encoders.robot.": "robot"}


def convert_config(palme: dict[str, Any], where: str) -> dict[str, Any]:
    """A schema-1 `palme` section -> the schema-2 one (nested); ValueError naming `where` and the key."""
    if not isinstance(palme, dict):
        msg = f"{where}: palme must be a JSON object (a schema-1 PalmEConfig), got {type(palme).__name__}"
        raise ValueError(msg)  # noqa: TRY004 - house rule: bad input is a ValueError
    unknown = sorted(set(palme) - set(SCHEMA1_DEFAULTS))
    if unknown:
        raise ValueError(f"{where}: palme has keys {unknown} that no schema-1 PalmEConfig had")
    old = {**SCHEMA1_DEFAULTS, **palme}
    removed = [k for k in REMOVED if old[k]]
    if removed:
        raise ValueError(f"{where}: palme.{removed[0]} is on, a variant schema 2 removed: this checkpoint cannot be "
                         f"converted (its results are in results/)")
    if old["use_state"] and not old["obj_words"] and any(old[k] for k in ("obj_size_words", "obj_relations",
                                                                          "zone_relations")):
        raise ValueError(f"{where}: palme.obj_size_words, obj_relations and zone_relations need obj_words")
    new: dict[str, Any] = {"name": old["name"], "seed": old["seed"], "prompt": {}, "llm": {}, "vision": {},
                           "state": {}, "lora": {}}
    for key, (section, field) in MOVED.items():
        new[section][field] = old[key]
    new["prompt"]["tokens"] = [*(["image"] if old["use_image"] else []),
                               *(["object", "robot"] if old["use_state"] else [])]
    new["state"]["features"] = [f for flag, names in FEATURE_FLAGS if old[flag] for f in names]
    return new


def renamed(name: str, tokens: list[str]) -> str | None:
    """The schema-2 name of a schema-1 tensor (None: an encoder the converted model does not build);
    ValueError for a name no schema-1 model had."""
    for old, new in RENAMES:
        if name.startswith(old):
            out = new + name.removeprefix(old)
            kind = next((t for p, t in _TYPE_OF_PREFIX.items() if out.startswith(p)), None)
            return None if kind is not None and kind not in tokens else out
    raise ValueError(f"tensor {name} is not a schema-1 PalmE tensor")


def _renamed_metadata(metadata: dict[str, str] | None, tokens: list[str]) -> dict[str, str] | None:
    """safetensors metadata with tensor names renamed (save_model records tied names: {kept: dropped})."""
    if not metadata:
        return metadata
    out = {}
    for key, value in metadata.items():
        try:
            key, value = renamed(key, tokens) or key, renamed(value, tokens) or value
        except ValueError:  # not a pair of tensor names ("format": "pt")
            pass
        out[key] = value
    return out


def convert_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """Convert the schema-1 checkpoint folder `src` into `dst` (created, or replaced when it is `src`).

    Every weight keeps its value, dtype and shape; the tokenizer and any other file are copied
    unchanged; the result is loaded with `PalmE.from_pretrained` before it is moved into place.
    Raises ValueError (one line naming the file and key) for a folder that is no schema-1
    checkpoint, a removed variant, or a `dst` that exists and is not `src`.
    """
    from agent.model.palme import CHECKPOINT_FILES, PalmE

    src, dst = Path(src), Path(dst)
    folder = check_folder(src, CHECKPOINT_FILES, "checkpoint")
    refuse_code(folder)
    meta = read_json_object(folder / "config.json")
    if meta.get("schema_version") != 1:
        raise ValueError(f"{folder / 'config.json'}: schema_version is {meta.get('schema_version')!r}; only schema 1 "
                         f"converts (this code reads {SCHEMA_VERSION} directly)")
    in_place = dst.resolve() == folder.resolve()
    if dst.exists() and not in_place:
        raise ValueError(f"{dst} exists; give a new folder (or the checkpoint itself, to convert it in place)")
    palme = convert_config(meta.get("palme"), str(folder / "config.json"))
    try:
        palme = PalmEConfig.from_dict(palme).to_dict()  # checked, in the dataclasses' order
    except ValueError as err:
        raise ValueError(f"{folder / 'config.json'}: {one_line(err)}") from None
    weights = folder / "model.safetensors"
    try:
        with safe_open(str(weights), framework="pt") as f:
            metadata = _renamed_metadata(f.metadata(), palme["prompt"]["tokens"])
            tensors = {}
            for name in f.keys():  # noqa: SIM118 - safe_open is not a Mapping
                new = renamed(name, palme["prompt"]["tokens"])
                if new is not None:
                    tensors[new] = f.get_tensor(name)
    except ValueError as err:
        raise ValueError(f"{weights}: {one_line(err)}") from None
    except OSError as err:
        raise ValueError(f"{weights} is not a readable safetensors file: {one_line(err)}") from None
    work = Path(tempfile.mkdtemp(prefix=".convert-", dir=dst.resolve().parent))
    try:
        for path in folder.iterdir():
            if path.is_file() and path.name not in ("config.json", "model.safetensors"):
                shutil.copy2(path, work / path.name)
        out = {**meta, "schema_version": SCHEMA_VERSION, "palme": palme}
        (work / "config.json").write_text(json.dumps(out, indent=2))
        save_file(tensors, str(work / "model.safetensors"), metadata=metadata)
        shutil.copymode(weights, work / "model.safetensors")
        PalmE.from_pretrained(work)  # every check of a normal load
        if in_place:
            for name in ("config.json", "model.safetensors"):
                (work / name).replace(folder / name)
            shutil.rmtree(work)
        else:
            work.replace(dst)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return dst


def main(argv: list[str] | None = None) -> int:
    """`python -m agent.model.convert SRC DST`: exit 0 converted, 2 with one line on stderr otherwise."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m agent.model.convert SRC DST  (DST may be SRC: convert in place)", file=sys.stderr)
        return 2
    try:
        out = convert_checkpoint(args[0], args[1])
    except ValueError as err:
        print(f"convert: error: {one_line(err)}", file=sys.stderr)
        return 2
    print(f"converted {args[0]} (schema 1) -> {out} (schema {SCHEMA_VERSION})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
