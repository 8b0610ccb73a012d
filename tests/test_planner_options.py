"""One planner-options schema: palme-run, palme-eval and palme-collect expose the same planner keys
(agent.planners.PlannerOptions, declared once), with one type and one default, and build the same planner."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from agent import config as run_config
from agent import evaluate
from agent.eval_agent import build_planner
from agent.planners import PalmEPlanner, PlannerOptions, RandomValidPlanner, planner_from_options
from training import collect

# CLI -> (its config file in configs/, its schema, the function that puts the schema into hydra's ConfigStore)
CLIS = {
    "palme-run": ("run", run_config.RunConfig, run_config.register_configs),
    "palme-eval": ("eval", evaluate.EvalConfig, evaluate.register_configs),
    "palme-collect": ("collect", collect.CollectConfig, collect.register_configs),
}
OPTION_FIELDS = {f.name: f for f in dataclasses.fields(PlannerOptions)}


def _composed(cli: str, overrides: list[str] | None = None):
    """The CLI's typed config as hydra builds it from configs/<name>.yaml and command-line overrides."""
    name, _, register = CLIS[cli]
    register()
    with initialize_config_module(config_module="configs", version_base="1.3"):
        return OmegaConf.to_object(compose(config_name=name, overrides=overrides or []))


@pytest.mark.parametrize("cli", CLIS)
def test_every_cli_schema_inherits_the_planner_keys_with_one_type_and_default(cli):
    _, schema, _ = CLIS[cli]
    own = {f.name: f for f in dataclasses.fields(schema)}
    for key, opt in OPTION_FIELDS.items():
        assert key in own, f"{cli} lacks the planner key {key}"
        assert (own[key].type, own[key].default) == (opt.type, opt.default), f"{cli} redeclares {key}"
        assert own[key] is opt, f"{cli} redeclares {key} (declare planner keys only in PlannerOptions)"
    assert "planner" in own and "planner" not in OPTION_FIELDS  # the name's default differs by purpose
    assert OPTION_FIELDS["constrained"].default is True  # the default every CLI documents


@pytest.mark.parametrize("cli", CLIS)
def test_each_cli_config_file_keeps_the_shared_defaults_and_takes_the_same_overrides(cli):
    assert _composed(cli).planner_options() == PlannerOptions()
    given = ["planner=palme", "constrained=false", "mode=open", "max_new_tokens=12", "max_plan_tokens=64",
             "check_done=true", "device=cpu", "planner_seed=3", "checkpoint=checkpoints/palme-tiny"]
    opts = _composed(cli, given).planner_options()
    assert opts == PlannerOptions(checkpoint="checkpoints/palme-tiny", mode="open", constrained=False,
                                  check_done=True, max_new_tokens=12, max_plan_tokens=64, planner_seed=3)


@pytest.mark.parametrize("cli", CLIS)
def test_bad_planner_options_are_refused_the_same_way_by_every_cli(cli):
    _, schema, _ = CLIS[cli]
    with pytest.raises(ValueError, match=r"mode must be one of \['closed', 'open'\], got 'sideways'"):
        schema(mode="sideways")
    with pytest.raises(ValueError, match="max_new_tokens and max_plan_tokens must be >= 1"):
        schema(max_new_tokens=0)


def test_collect_keeps_its_former_empty_checkpoint_spelling_and_refuses_one_without_a_model():
    assert collect.CollectConfig(planner="palme", checkpoint="").checkpoint is None  # "" was "the shipped model"
    with pytest.raises(ValueError, match="checkpoint is for planner=palme"):
        collect.CollectConfig(planner="oracle", checkpoint="checkpoints/palme-tiny")


def test_planner_constructor_defaults_are_the_options_defaults():
    params = inspect.signature(PalmEPlanner.__init__).parameters
    for key in ("checkpoint", "mode", "constrained", "check_done", "max_new_tokens", "max_plan_tokens", "device"):
        assert params[key].default == OPTION_FIELDS[key].default, key
    assert inspect.signature(RandomValidPlanner.__init__).parameters["seed"].default == PlannerOptions.planner_seed


def _built(planner: PalmEPlanner) -> tuple:
    """What a built model planner does: its class, decoding options, device and weights."""
    weights = planner.model.state_dict()
    return (type(planner), planner.mode, planner.constrained, planner.check_done, planner.max_new_tokens,
            planner.max_plan_tokens, str(next(planner.model.parameters()).device), planner.model.config.to_dict(),
            {k: float(v.float().sum()) for k, v in weights.items()})


def test_each_cli_builds_the_same_model_planner_from_its_default_config():
    run_cfg = _composed("palme-run")  # planner=palme is palme-run's default
    eval_cfg = evaluate.resolve(_composed("palme-eval", ["planner=palme"]))
    collect_cfg = _composed("palme-collect", ["planner=palme"])
    built = [
        planner_from_options(run_cfg.planner, run_cfg.planner_options()),  # as agent.cli.run.run builds it
        build_planner(evaluate.runner_settings(eval_cfg)),  # as each palme-eval worker builds it
        collect._make_planner(collect_cfg),  # as each palme-collect worker builds it
    ]
    with torch.no_grad():
        first, *others = (_built(p) for p in built)
    assert first[:7] == (PalmEPlanner, "closed", True, False, 48, 256, "cpu")
    assert all(o == first for o in others)
