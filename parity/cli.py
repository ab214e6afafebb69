"""`python -m parity`: the parity report of numpy_gpt vs torch_gpt; exit 1 on any failure.

    python -m parity                                   # CPU float64 + float32 (+ CUDA)
    python -m parity --dtype all --device cuda --json parity.json
    python -m parity --config small --case 'model/*'
    python -m parity --twin my_gpt.py:make_model --name-map map.json   # any GPT (external.py)
    python -m parity --twin hf                         # also: --twin torch, --twin numpy
    python -m parity --config llama-tiny               # Llama-shaped (RMSNorm, RoPE, SwiGLU,
                                                       # GQA); the default run has Llama cases

--twin hf with a GPT-2-shaped config checks GPT2LMHeadModel at it and LlamaForCausalLM at the
same size Llama-shaped (cases.llama_config); with a Llama config, LlamaForCausalLM alone.

Exit status: 0 all rows within tolerance, 1 any failure, 2 bad flags or a twin that cannot
be loaded, placed or run (one-line error).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import NoReturn

import torch

from .cases import CASES, llama_config, select
from .external import check_twin, format_twin_report
from .harness import Row, env_info, print_report
from .runner import DEVICES, DTYPES, PRESETS, parse_setup, plan, run, torch_threads
from .twins import BUILTIN_TWINS, TwinError


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
    p.add_argument("--twin", metavar="SPEC",
                   help="check an outside GPT against the float64 NumPy reference instead of "
                        "running the cases: FILE.py:NAME or package.module:NAME, NAME a factory "
                        "taking the GPTConfig and returning the model (an nn.Module), or a "
                        f"built-in twin {sorted(BUILTIN_TWINS)}. Runs in float64 when the "
                        "model can (else float32; --dtype float32 forces it)")
    p.add_argument("--name-map", metavar="JSON_OR_FILE",
                   help="with --twin: the reference's canonical names -> the model's "
                        "parameter names, '{i}' for the layer index, a list of three names "
                        "for separate q, k, v (see parity/namemap.py and the README)")
    # Testing hook: plant a wrong gradient (x1.001) for this parameter in the torch twin.
    p.add_argument("--inject-fault", metavar="PARAM", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None, *, started: float | None = None) -> int:
    """`python -m parity`. `started`: perf_counter() when the command began (__main__.py takes
    it before importing torch), so the time printed in all includes the start-up."""
    started = time.perf_counter() if started is None else started
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(c.name for c in CASES))
        return 0
    if args.twin is not None or args.name_map is not None:
        return _main_twin(parser, args, started)
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
    print(f"({timing(elapsed, started)}; config {args.config}: {config.to_dict()}, "
          f"B={batch_size}, T={seq_len}, seed {args.seed})")
    if args.json:
        env = env_info() | {"config": config.to_dict(), "batch_size": batch_size,
                            "seq_len": seq_len, "seed": args.seed, "tf32": False,
                            "pairs": [list(p) for p in pairs], "elapsed_s": elapsed}
        _write_json(args, env, rows)
    return 0 if rows and all(r.ok for r in rows) else 1


def _main_twin(parser: argparse.ArgumentParser, args: argparse.Namespace, started: float
               ) -> int:
    """--twin SPEC: one outside model against the reference (parity/external.py)."""
    if args.twin is None:
        parser.error("--name-map needs --twin")
    for flag, value in (("--case", args.case), ("--inject-fault", args.inject_fault)):
        if value:
            parser.error(f"{flag} does not apply to --twin (it runs the twin check only)")
    if args.dtype not in (None, "float64", "float32"):
        parser.error(f"--twin runs in float64 or float32, not {args.dtype}")
    if args.device == "all" or (args.device == "cuda" and not torch.cuda.is_available()):
        parser.error("--twin needs one available device: --device cpu or cuda")
    if args.threads < 0:
        parser.error(f"--threads must be >= 0, got {args.threads}")
    try:
        config, batch_size, seq_len = parse_setup(args.config)
        runs = [(config, None)]
        if args.twin == "hf" and config.arch == "gpt2":  # transformers' Llama too
            runs.append((llama_config(config), "hf-llama"))
        t0 = time.perf_counter()
        with torch_threads(args.threads or None):
            reports = [check_twin(args.twin, cfg, batch_size, seq_len, seed=args.seed,
                                  name_map=args.name_map, dtype=args.dtype,
                                  device=args.device or "cpu", label=label)
                       for cfg, label in runs]
    except (TwinError, ValueError) as e:
        parser.error(str(e))
    elapsed = time.perf_counter() - t0
    rows = [r for report in reports for r in report.rows]
    print_report(rows, failures_only=args.failures_only)
    for report in reports:
        print("\n" + "\n".join(format_twin_report(report)))
        print(f"  config as the model has it: {report.config.describe_arch()}")
    config = reports[0].config  # with the head and bias read from the model
    print(f"({timing(elapsed, started)}; config {args.config} as the model has it: "
          f"{config.to_dict()}, B={batch_size}, T={seq_len}, seed {args.seed})")
    if args.json:
        twins = [{"spec": args.twin, "label": r.label, "config": r.config.to_dict(),
                  "notes": r.notes, "findings": r.findings} for r in reports]
        env = env_info() | {"config": config.to_dict(), "batch_size": batch_size,
                            "seq_len": seq_len, "seed": args.seed, "tf32": False,
                            "elapsed_s": elapsed, "twin": twins[0], "twins": twins}
        _write_json(args, env, rows)
    return 0 if all(r.ok for r in reports) else 1


def timing(comparing_s: float, started: float) -> str:
    """'0.4 s comparing, 3.1 s in all': the check itself, and the whole command with its
    start-up (importing torch, loading a twin), which is most of a small run's time."""
    return f"{comparing_s:.1f} s comparing, {time.perf_counter() - started:.1f} s in all"


def _write_json(args: argparse.Namespace, env: dict, rows: list[Row]) -> None:
    if args.threads:
        env["torch_threads"] = args.threads  # what the run used
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(
        json.dumps({"env": env, "rows": [r.as_json() for r in rows]}, indent=1) + "\n",
        encoding="utf-8")
