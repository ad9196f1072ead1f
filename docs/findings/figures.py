"""The figures of docs/findings-fashion-mnist.md, drawn by the report's own plotting code.

    .venv/bin/python docs/findings/figures.py results/paper-fmnist-cpu [docs/findings/plots]

Analyses the store like `roar report` (analysis.analyze) and writes the three first-screen figures of the
report (analysis.figures.write_figures: (a) paired effect of post-processing per method and fraction,
(b) leakage against score, (c) how the ranking moves) as PNG under the plots folder, then prints the
Markdown that embeds them with their captions, ready to paste into the findings document. The other
figures of the document (accuracy curves, blurriness scatter, rank heat map) are the report's own
plots/*.png of the same store.
"""
from __future__ import annotations

import os
import sys

import analysis
from analysis.figures import write_figures


def main(store: str, out_dir: str = "docs/findings/plots") -> None:
    a = analysis.analyze(store)
    doc_dir = "docs"   # the findings document lives in docs/: image links are relative to it
    for name, (path, caption) in write_figures(a, out_dir).items():
        rel = os.path.relpath(path, doc_dir)
        print(f"![{name}]({rel})\n\n*{caption}*\n")


if __name__ == "__main__":
    main(*sys.argv[1:3] if len(sys.argv) > 1 else ["results/paper-fmnist-cpu"])
