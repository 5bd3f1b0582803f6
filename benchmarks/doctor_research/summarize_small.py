"""Table of small.py results: one row per run (member 0 alone, mean member, ensemble, OOF).

    python benchmarks/doctor_research/summarize_small.py results/small_tune1.jsonl [...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

DTW = {}
for log in (HERE / "results" / "export_ucr.log", HERE / "results" / "export_ucr2.log"):
    if log.exists():
        for line in log.read_text().splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                DTW[r["set"]] = r["dtw_1nn"]


def row(r: dict) -> str:
    m = r["members"]
    single = [x["test"] for x in m]
    single_tta = [x["test_tta"] for x in m]
    return (f"| {r['set']} | {r['tag']} | s{r['seed']} | {m[0]['test']:.3f} | {np.mean(single):.3f} "
            f"(min {min(single):.3f}) | {np.mean(single_tta):.3f} | **{r['ensemble'][-1]:.3f}** | "
            f"**{r['ensemble_tta'][-1]:.3f}** | {r['oof'] if r['oof'] is not None else '-'} | "
            f"{DTW.get(r['set'], '?')} | {np.mean([x['steps'] for x in m]):.0f} |")


def main(paths: list[str]) -> None:
    print("| set | tag | seed | member 0 | mean member | mean member TTA | ensemble | ensemble TTA | OOF | "
          "1-NN DTW | steps/member |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for p in paths:
        for line in Path(p).read_text().splitlines():
            print(row(json.loads(line)))


if __name__ == "__main__":
    main(sys.argv[1:])
