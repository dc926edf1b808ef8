#!/usr/bin/env bash
# Retrain, convert, evaluate and benchmark the default model from the shared CIFAKE tarballs, with the project's
# own commands. Expected figures: benchmarks/RESULTS.md. About 45 min of training on an idle 2-core CPU.
#
#   bash benchmarks/reproduce_default_model.sh            # DATA=../shared/data OUT=runs/reproduce
#
# Training is deterministic on a given machine (seeded data order, augmentation and dropout); another CPU or
# library version can move the last digit or two of the figures.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/reproduce}
ARCH=cnn_wide
RUN="$OUT/${ARCH}-32-e30"
mkdir -p "$OUT"

if [[ -f "$RUN/state.json" ]]; then
    edgedetect train --resume "$RUN"       # an interrupted run continues where it stopped
else
    edgedetect train --arch "$ARCH" --data "$DATA/cifake-train.tar.gz" --epochs 30 --patience 8 --seed 0 --out "$RUN"
fi
for q in fp32 fp16 int8; do
    edgedetect convert "$RUN/best.keras" --quant "$q" --calib "$DATA/cifake-train.tar.gz" \
        --out "$OUT/${ARCH}32_$q.tflite" --force
    edgedetect evaluate "$OUT/${ARCH}32_$q.tflite" --data "$DATA/cifake-test.tar.gz" --split test --json \
        > "$OUT/${ARCH}32_$q.test.json"
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"{sys.argv[1]}: accuracy {d['accuracy']:.4f}  F1 {d['f1']:.4f}  ROC-AUC {d['roc_auc']:.4f}\")" \
        "$OUT/${ARCH}32_$q.test.json"
done
edgedetect bench "$OUT/${ARCH}32_"{fp32,fp16,int8}.tflite --data "$DATA/cifake-test.tar.gz" --force \
    --csv "$OUT/bench.csv" --plot "$OUT/bench.png"
