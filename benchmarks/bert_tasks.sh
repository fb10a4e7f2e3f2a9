#!/usr/bin/env bash
# MiniLM-L6 on the three BERT tasks of issue #6, strategies none / adapter / full, on subsets sized for 2 CPU cores.
# Usage: [TRAIN=600 VAL=300 EPOCHS=2] benchmarks/bert_tasks.sh [OUT]
#   (OUT defaults to runs/bert-tasks; data subsets are written to OUT/data)
# Each block is an ordinary `tunelab compare`; its results.md is the table in benchmarks/README.md.
set -euo pipefail
D=${DATASETS:-../shared/datasets}
OUT=${1:-runs/bert-tasks}
PY=${PY:-.venv/bin/python}
TRAIN=${TRAIN:-600}   # training sentences / records / rows
VAL=${VAL:-300}       # validation ones
EPOCHS=${EPOCHS:-2}
mkdir -p "$OUT/data"
# subsets: the first sentences/records of each file (CoNLL without its -DOCSTART- paragraphs)
sentences() { awk -v RS= -v ORS='\n\n' '$1 != "-DOCSTART-"' "$1" | awk -v RS= -v ORS='\n\n' -v n="$2" 'NR <= n'; }
sentences "$D/conll2003/train.txt" "$TRAIN" > "$OUT/data/conll-train.txt"
sentences "$D/conll2003/valid.txt" "$VAL" > "$OUT/data/conll-valid.txt"
head -n $((4 * TRAIN)) "$D/semeval2010_task8/train.txt" > "$OUT/data/semeval-train.txt"   # 4 lines per record
head -n $((4 * VAL)) "$D/semeval2010_task8/test.txt" > "$OUT/data/semeval-test.txt"
head -n $((TRAIN + 1)) "$D/sst2/train.tsv" > "$OUT/data/sst2-train.tsv"                   # header + rows
head -n $((VAL + 1)) "$D/sst2/dev.tsv" > "$OUT/data/sst2-dev.tsv"

run() { "$PY" -m tunelab compare --model minilm-l6 --strategies none,adapter,full --seeds 1 --epochs "$EPOCHS" --batch-size 16 "$@"; }
run --data "$OUT/data/conll-train.txt" --val-data "$OUT/data/conll-valid.txt" --out "$OUT/conll"
run --data "$OUT/data/semeval-train.txt" --val-data "$OUT/data/semeval-test.txt" --out "$OUT/semeval"
run --data "$OUT/data/sst2-train.tsv" --val-data "$OUT/data/sst2-dev.tsv" --out "$OUT/sst2"
run --data "$OUT/data/sst2-train.tsv" --val-data "$OUT/data/sst2-dev.tsv" --adversarial fgm --out "$OUT/sst2-fgm"
