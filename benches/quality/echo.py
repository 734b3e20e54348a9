"""The echo on dense clusters (issue 18): does activation that returns to a node along a
cycle grow the sum without limit as spreading goes deeper?

    python -m benches.quality.echo [--json PATH]

A clique of n memories, every pair linked both ways with weight w, one seed at activation
1.0 or 0.5: the total activation after spreading to depth 1, 2, 4, 8 and 16 (the default
depth is 4), and at depth 16 the strongest member other than the seed against the seed,
under fan="none" and the default fan="source", with the default rules otherwise (the
echo ceiling of csrc/kernels/spread.c included). Run it on an engram without the ceiling
for the "before": there the total is bounded only by the clamp (each memory holds at most
1), and members reach their seed. No timing: this measures activation, not speed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engram import Engine

SIZES, WEIGHTS, DEPTHS, SEED_ACTS = (10, 50, 200), (0.3, 1.0), (1, 2, 4, 8, 16), (1.0, 0.5)


def clique(eng, n: int, w: float):
    mem = eng.space(f"clique-{n}-{int(w * 10)}")
    rng = np.random.default_rng(n)
    ids = mem.remember(rng.standard_normal((n, 8)).astype(np.float32))
    src, dst = np.meshgrid(ids, ids, indexing="ij")
    off = src != dst
    mem.link(src[off], dst[off], np.full(int(off.sum()), w, np.float32))
    mem.compact()
    return mem, ids


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    rows = []
    print("| clique | weight | seed | fan | " + " | ".join(f"sum @ depth {d}" for d in DEPTHS)
          + " | seed @ 16 | top member @ 16 |")
    print("|---|---|---|---|" + "---|" * (len(DEPTHS) + 2))
    with Engine(dim=8, workers=0) as eng:
        for n in SIZES:
            for w in WEIGHTS:
                mem, ids = clique(eng, n, w)
                for a0 in SEED_ACTS:
                    for fan in ("none", "source"):
                        sums = []
                        for d in DEPTHS:
                            got, act = mem.spread({int(ids[0]): a0}, max_depth=d, fan=fan)
                            sums.append(float(act.sum()))
                        seed_act = float(act[got == ids[0]][0])
                        top = float(act[got != ids[0]].max()) if (got != ids[0]).any() else 0.0
                        rows.append({"n": n, "weight": w, "seed": a0, "fan": fan, "sums": dict(zip(DEPTHS, sums)),
                                     "seed_at_16": seed_act, "top_member_at_16": top})
                        print(f"| {n} | {w} | {a0} | {fan} | " + " | ".join(f"{s:.2f}" for s in sums)
                              + f" | {seed_act:.3f} | {top:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
