"""Write the bert_tasks table of benchmarks/README.md from the run summaries of `bert_tasks.sh OUT`.

Usage: python benchmarks/bert_tasks_table.py [OUT]   (default runs/bert-tasks). A run without summary.json
is listed as not finished.
"""

import json
import sys
from pathlib import Path

from bench_common import write_table

root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/bert-tasks")
rows = [
    "| task (data) | strategy | adversarial | val score | other val metrics | trainable params | train time | peak memory |",
    "|---|---|---|---:|---|---:|---:|---:|",
]
names = {
    "conll": ("NER (CoNLL-2003)", "-"),
    "semeval": ("relations (SemEval-2010 T8)", "-"),
    "sst2": ("SST-2", "-"),
    "sst2-fgm": ("SST-2", "FGM, eps 1"),
}
for name, (label, adv) in names.items():
    for spec in ["none", "adapter", "full"]:
        p = root / name / "runs" / "fraction-1" / spec / "s0" / "summary.json"
        if not p.is_file():
            rows.append(f"| {label} | {spec} | {adv} | not finished | | | | |")
            continue
        s = json.loads(p.read_text())
        sized = f"{label} {s['train_examples']}/{s['val_examples']}"
        m = s["metrics_last"]
        other = ", ".join(
            f"{k[4:]} {v:.3f}"
            for k, v in m.items()
            if k.startswith("val_") and k not in ("val_loss", f"val_{s['metric']}")
        )
        rows.append(
            f"| {sized} | {spec} | {adv} | {s['metric']} {s['score']:.3f} | {other} | {s['trainable_params']:,} | "
            f"{s['train_seconds'] / 60:.1f} min | {s['peak_memory_mb']:.0f} MB |"
        )
write_table("bert_tasks", "\n".join(rows), quick=False)
