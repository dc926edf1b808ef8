#!/usr/bin/env bash
# Retrain, convert, evaluate and benchmark the default model (models/cnn_pair32_*.tflite: the mean of two `cnn`s
# that differ only in --init-seed) from the shared CIFAKE tarballs, with the project's own commands. Expected
# figures: benchmarks/RESULTS.md. About 1 hour of training on an idle 2-core CPU; an interrupted run continues
# where it stopped when the script is run again.
#
#   bash benchmarks/reproduce_default_model.sh            # DATA=../shared/data OUT=runs/reproduce
#
# Training is deterministic on a given machine (seeded data order, augmentation and dropout); another CPU or
# library version can move the last digit or two of the figures.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/reproduce}
mkdir -p "$OUT"

train() {  # train INIT_SEED: a new 40-epoch cnn run, or the interrupted one resumed
    local run="$OUT/cnn-32-e40-init$1"
    if [[ -f "$run/metrics.json" ]]; then return; fi
    if [[ -f "$run/state.json" ]]; then
        edgedetect train --resume "$run"
    else
        edgedetect train --arch cnn --data "$DATA/cifake-train.tar.gz" --epochs 40 --patience 8 --seed 0 \
            --init-seed "$1" --out "$run"
    fi
}
train 0
train 1
edgedetect ensemble "$OUT/cnn-32-e40-init0" "$OUT/cnn-32-e40-init1" --out "$OUT/ensemble" --force

for q in fp32 fp16 int8; do
    model="$OUT/cnn_pair32_$q.tflite"
    edgedetect convert "$OUT/ensemble/best.keras" --quant "$q" --calib "$DATA/cifake-train.tar.gz" --out "$model" --force
    edgedetect evaluate "$model" --data "$DATA/cifake-test.tar.gz" --split test --json > "$OUT/cnn_pair32_$q.test.json"
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"{sys.argv[1]}: accuracy {d['accuracy']:.4f}  F1 {d['f1']:.4f}  ROC-AUC {d['roc_auc']:.4f}\")" \
        "$OUT/cnn_pair32_$q.test.json"
done
mkdir -p "$OUT/cifake" && tar -xzf "$DATA/cifake-test.tar.gz" -C "$OUT/cifake"
edgedetect bench "$OUT"/cnn_pair32_{fp32,fp16,int8}.tflite --data "$OUT/cifake/test" --force \
    --csv "$OUT/bench.csv" --plot "$OUT/bench.png"
