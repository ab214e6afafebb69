"""`python -m parity`: the parity report of numpy_gpt vs torch_gpt; exit 1 on any failure.

    python -m parity                                   # CPU float64 + float32 (+ CUDA)
    python -m parity --dtype all --device cuda --json parity.json
    python -m parity --config small --case 'model/*'

Exit status: 0 all rows within tolerance, 1 any failure, 2 bad flags (one-line error).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import NoReturn

from .cases import CASES, select
from .harness import env_info, print_report
from .runner import DEVICES, DTYPES, PRESETS, parse_setup, plan, run


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse prints usage too)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m parity", allow_abbrev=False,
                description="Compare numpy_gpt and torch_gpt tensor by tensor "
                            "(layers, whole model, AdamW training); exit 1 on any failure.")
    p.add_argument("--dtype", choices=[*DTYPES, "all"], default=None,
                   help="precision to compare in (default: float64 and float32 on the CPU; "
                        "float32 with TF32 off, bfloat16 and float16 autocast on CUDA). "
                        "bfloat16/float16 run torch under autocast against the float64 "
                        "NumPy reference")
    p.add_argument("--device", choices=[*DEVICES, "all"], default=None,
                   help="device for torch_gpt (default and 'all': cpu, plus cuda if present)")
    p.add_argument("--config", default="tiny", metavar="PRESET_OR_JSON",
                   help=f"model size: a preset {sorted(PRESETS)}, a JSON object of GPTConfig "
                        "fields (+ batch_size, seq_len) or a path to such a JSON file "
                        "(default: tiny)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for parameters, inputs and dropout masks (default: 0)")
    p.add_argument("--case", action="append", metavar="GLOB",
                   help="run only cases matching this glob, e.g. 'model/*' (repeatable)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch intra-op threads during the run (default: 1; the default sizes "
                        "are too small to gain from more; 0 = leave torch's setting)")
    p.add_argument("--json", metavar="PATH", help='write {"env": ..., "rows": [...]} to PATH')
    p.add_argument("--failures-only", action="store_true",
                   help="print only failed rows (the summary is always printed)")
    p.add_argument("--list", action="store_true", help="list the case names and exit")
    # Testing hook: plant a wrong gradient (x1.001) for this parameter in the torch twin.
    p.add_argument("--inject-fault", metavar="PARAM", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(c.name for c in CASES))
        return 0
    try:
        config, batch_size, seq_len = parse_setup(args.config)
        pairs = plan(args.dtype, args.device)
    except ValueError as e:
        parser.error(str(e))
    if args.threads < 0:
        parser.error(f"--threads must be >= 0, got {args.threads}")
    cases = select(args.case)
    if not cases:
        parser.error(f"--case {args.case} matches no case (see --list)")

    t0 = time.perf_counter()
    rows = run(pairs, config, batch_size, seq_len, seed=args.seed, cases=cases,
               fault=args.inject_fault, threads=args.threads or None)
    elapsed = time.perf_counter() - t0
    print_report(rows, failures_only=args.failures_only)
    print(f"({elapsed:.1f} s; config {args.config}: {config.to_dict()}, B={batch_size}, "
          f"T={seq_len}, seed {args.seed})")
    if args.json:
        env = env_info() | {"config": config.to_dict(), "batch_size": batch_size,
                            "seq_len": seq_len, "seed": args.seed, "tf32": False,
                            "pairs": [list(p) for p in pairs], "elapsed_s": elapsed}
        if args.threads:
            env["torch_threads"] = args.threads  # what the run used
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps({"env": env, "rows": [r.as_json() for r in rows]}, indent=1) + "\n",
            encoding="utf-8")
    return 0 if rows and all(r.ok for r in rows) else 1
