#!/usr/bin/env python3
"""Plots `sparse24 bench gemm --json` results: sparse/dense speed-up against M, one line per weight shape.

    scripts/plot_bench.py bench.json -o bench.png [--threads 1] [--table]

One panel per thread count found in the file (or only the one asked for). The ratio is the best dense
library's time over the 2:4 kernel's time, measured in the same run; 1.0 is parity. --table also prints
the rows as a Markdown table (as docs/performance.md shows them).
"""
import argparse
import json
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", help="output of `sparse24 bench gemm --json`")
    ap.add_argument("-o", "--output", default="bench_gemm.png", help="PNG file to write")
    ap.add_argument("--threads", type=int, help="plot only this thread count")
    ap.add_argument("--table", action="store_true", help="also print a Markdown table of the rows")
    args = ap.parse_args()

    with open(args.json) as f:
        rows = json.load(f)
    if not isinstance(rows, list) or not rows:
        print(f"{args.json}: expected a non-empty JSON list of benchmark rows", file=sys.stderr)
        return 1
    for key in ("m", "n", "k", "threads", "ratio", "dtype"):
        if any(key not in r for r in rows):
            print(f"{args.json}: a row lacks '{key}'", file=sys.stderr)
            return 1
    threads = sorted({r["threads"] for r in rows if args.threads in (None, r["threads"])})
    if not threads:
        print(f"{args.json}: no rows with threads={args.threads}", file=sys.stderr)
        return 1

    fig, axes = plt.subplots(1, len(threads), figsize=(6.5 * len(threads), 4.8), squeeze=False, sharey=True)
    for ax, t in zip(axes[0], threads):
        lines = defaultdict(list)
        for r in rows:
            if r["threads"] == t:
                lines[(r["n"], r["k"])].append((r["m"], r["ratio"]))
        for (n, k), pts in sorted(lines.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{n}x{k}")
        ax.axhline(1.0, color="gray", linewidth=0.8, linestyle="--")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("M (rows of X)")
        ax.set_title(f"{rows[0]['dtype']} weights, {t} thread{'s' if t > 1 else ''}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(title="N x K", fontsize=8)
    axes[0][0].set_ylabel("speed-up: best dense time / 2:4 time")
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    print(f"wrote {args.output}")
    if args.table:
        print_table([r for r in rows if r["threads"] in threads])
    return 0


def print_table(rows) -> None:
    extra = any("ratio_vs_f32_dense" in r for r in rows)
    head = ["N x K", "M", "threads", "dense lib", "dense ms", "2:4 ms", "2:4 kernel", "ratio"]
    if extra:
        head.append("ratio vs f32 dense")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in sorted(rows, key=lambda r: (r["n"] * r["k"], r["n"], r["m"], r["threads"])):
        cells = [f"{r['n']}x{r['k']}", str(r["m"]), str(r["threads"]), r["dense_lib"], f"{r['dense_ms']:.3f}",
                 f"{r['sparse_ms']:.3f}", r.get("sparse_kernel", ""), f"{r['ratio']:.2f}"]
        if extra:
            cells.append(f"{r['ratio_vs_f32_dense']:.2f}" if "ratio_vs_f32_dense" in r else "")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
