#!/bin/bash
# Stop 32 probes: fine-tune NAME from INIT on DATA (comma-separated palme-collect folders) with code at CODE; the
# recipe's weights with plan raised to 1.0 (merged, not replaced). F3kL: DATA=3,000 T3 episodes (palme-collect env=push
# task=side_together episodes=3000 seed_start=100000), INIT=checkpoints/palme-tiny, train.steps=3000 save_every=3000.
# usage: probe_ft.sh NAME CODE DATA INIT [extra overrides]  -> outputs/train/s17-NAME (fine-tune)
N=$1; CODE=$2; DATA=$3; INIT=$4; shift 4
cd $CODE
start=$(date +%s)
OMP_NUM_THREADS=1 PYTHONPATH=$CODE nice -n 5 /work/main/.venv/bin/python -m training.train experiment=palme_tiny run_name=s17-$N output_dir=/work/main/outputs/train/s17-$N "data.dirs=[$DATA]" init_from=$INIT 'data.weights={plan:1.0}' train.steps=1000 train.warmup_steps=50 train.lr=1e-3 save_every=1000 "$@"
echo "TRAIN $N $(( $(date +%s) - start )) s"
