#!/usr/bin/env bash
# MiniLM-L6 on the three BERT tasks of issue #6, strategies none / adapter / full, on subsets sized for 2 CPU cores.
# Usage: benchmarks/bert_tasks.sh [OUT]   (OUT defaults to runs/bert-tasks; data subsets are written to OUT/data)
# Each block is an ordinary `tunelab compare`; its results.md is the table in benchmarks/README.md.
set -euo pipefail
D=${DATASETS:-../shared/datasets}
OUT=${1:-runs/bert-tasks}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT/data"
# subsets: the first sentences/records of each file (CoNLL without its -DOCSTART- paragraphs)
sentences() { awk -v RS= -v ORS='\n\n' '$1 != "-DOCSTART-"' "$1" | awk -v RS= -v ORS='\n\n' -v n="$2" 'NR <= n'; }
sentences "$D/conll2003/train.txt" 160 > "$OUT/data/conll-train-160.txt"
sentences "$D/conll2003/valid.txt" 100 > "$OUT/data/conll-valid-100.txt"
head -n 800 "$D/semeval2010_task8/train.txt" > "$OUT/data/semeval-train-200.txt"   # 4 lines per record; 200 cover the 100 test labels
head -n 400 "$D/semeval2010_task8/test.txt" > "$OUT/data/semeval-test-100.txt"
head -n 161 "$D/sst2/train.tsv" > "$OUT/data/sst2-train-160.tsv"                   # header + 160 rows
head -n 101 "$D/sst2/dev.tsv" > "$OUT/data/sst2-dev-100.tsv"

run() { nice -n 5 "$PY" -m tunelab compare --model minilm-l6 --strategies none,adapter,full --seeds 1 --epochs 1 --batch-size 16 "$@"; }
run --data "$OUT/data/conll-train-160.txt" --val-data "$OUT/data/conll-valid-100.txt" --out "$OUT/conll"
run --data "$OUT/data/semeval-train-200.txt" --val-data "$OUT/data/semeval-test-100.txt" --out "$OUT/semeval"
run --data "$OUT/data/sst2-train-160.tsv" --val-data "$OUT/data/sst2-dev-100.tsv" --out "$OUT/sst2"
run --data "$OUT/data/sst2-train-160.tsv" --val-data "$OUT/data/sst2-dev-100.tsv" --adversarial fgm --out "$OUT/sst2-fgm"
