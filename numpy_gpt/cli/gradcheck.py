"""`python -m numpy_gpt gradcheck`: finite differences vs every hand-written backward."""

from __future__ import annotations

import argparse

import numpy as np

from ..nn.gradcheck import TOLERANCE, check_layer, check_model, layer_cases, model_variants


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layer", action="append", metavar="NAME",
                        help="check only this layer (repeatable); 'list' shows the names")
    parser.add_argument("--model", action="store_true",
                        help="check only the whole-model variants (default: layers and model)")
    parser.add_argument("--seed", type=int, default=0, help="seed for inputs (default 0)")


def run(args: argparse.Namespace) -> int:
    rng = np.random.default_rng(args.seed)
    cases = layer_cases(rng)
    variants = model_variants()
    if args.layer and "list" in args.layer:
        print("layers:", " ".join(cases))
        print("model variants:", " ".join(variants))
        return 0
    names = args.layer or ([] if args.model else list(cases))
    unknown = [n for n in names if n not in cases and n not in variants]
    if unknown:
        raise ValueError(f"unknown layer {unknown[0]!r}; valid: {', '.join(cases)}, "
                         f"{', '.join(variants)} (or --layer list)")
    rows = []
    for name in names:
        if name in cases:
            rows += check_layer(name, cases[name], rng)
        else:
            config, kwargs = variants[name]
            rows += check_model(config, case=name, seed=args.seed, **kwargs)
    if not args.layer:
        for name, (config, kwargs) in variants.items():
            rows += check_model(config, case=name, seed=args.seed, **kwargs)

    print(f"{'case':26s} {'tensor':44s} {'rel error':>10s}  (float64, tolerance {TOLERANCE:g})")
    for r in rows:
        print(f"{r.case:26s} {r.tensor:44s} {r.rel_error:10.2e}  {'ok' if r.ok else 'FAIL'}")
    failed = [r for r in rows if not r.ok]
    worst = max(rows, key=lambda r: r.rel_error)
    print(f"{len(rows) - len(failed)}/{len(rows)} tensors ok; worst {worst.rel_error:.2e} "
          f"({worst.case} {worst.tensor})")
    return 1 if failed else 0
