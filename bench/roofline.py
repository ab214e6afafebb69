"""What the machine was measured to do, set against each row: decoding's memory roofline
(GB/s and MBU), and the guard that withholds a figure the machine cannot have produced.

    add_best_peak_mfu(rows, peaks)  # mfu_best: against the fastest matmul of the device
    add_roofline(rows, peaks)       # gbps, mbu for the generation rows
    mark_impossible(rows, peaks)    # status "impossible" where a count must be wrong

MBU (memory-bandwidth utilisation) = the bytes a decoder must read (bench/flops.py's
generation_bytes: every weight once per forward pass, plus each row's cached keys and values
at its position) / the row's median time, as a fraction of the best memory bandwidth
measured on the same device in the same run (bench/bandwidth.py: a large-array copy and a
read, whichever framework was faster). Decoding one token at a time is bound by memory, not
arithmetic: its MFU is small by nature, and MBU says how close it gets to its real limit.

MBU is given only where the roofline applies: when what one decode step reads (the weights
and the KV cache, `working_set_bytes`) is larger than the last-level cache. A model that
fits in the cache is read from it, faster than from DRAM, and its MBU would be meaningless
(above 100 % for nothing wrong); the row then says so in `roofline_note` and `mbu` is null.

The guard (issue 27): a row's GFLOP/s above the fastest matmul of its device and precision
measured in this run, or (with a working set more than twice the cache) its GB/s above the
measured bandwidth, by more than that measurement's own spread (the repetitions' (max -
min) / max, at least MIN_TOLERANCE), is impossible: the FLOP or byte count of the workload
is wrong. Such a row gets status "impossible" with the reason, its gflops/mfu (or gbps/mbu)
are withheld (null; the claimed value is in the reason and in `claimed_gflops` /
`claimed_gbps`), and `python -m bench` exits 1. Its timings stand: they were measured.
"""

from __future__ import annotations

from typing import Any

MIN_TOLERANCE = 0.05  # the least excess over a peak called impossible: timer and noise margin
CACHE_FACTOR = 2  # a working set this many times the cache cannot be served from it


def _ok(p: dict[str, Any]) -> bool:
    return p.get("status") == "ok"


def best_bandwidth(peaks: dict[str, Any], device: str) -> tuple[str, dict[str, Any]] | None:
    """(key, entry) of the fastest memory bandwidth measured on `device` in this run."""
    same = {k: p for k, p in peaks.items() if p.get("kind") == "bandwidth" and _ok(p)
            and p.get("device") == device and p.get("gbps")}
    if not same:
        return None
    key = max(same, key=lambda k: same[k]["gbps"])
    return key, same[key]


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def add_roofline(rows: list[dict[str, Any]], peaks: dict[str, Any]) -> None:
    """gbps (bytes_per_step / median time) on every ok generation row; mbu, bandwidth_key and
    bandwidth_gbps where the row's working set exceeds the last-level cache."""
    for row in rows:
        row.setdefault("roofline_note", None)
        if row["status"] != "ok" or not row.get("bytes_per_step") or not row.get("ms_median"):
            continue
        row["gbps"] = row["bytes_per_step"] / (row["ms_median"] / 1e3) / 1e9
        found = best_bandwidth(peaks, row["device"])
        if found is None:
            row["roofline_note"] = "no memory bandwidth measured on this device: no MBU"
            continue
        key, bw = found
        row["bandwidth_key"], row["bandwidth_gbps"] = key, bw["gbps"]
        cache, ws = bw.get("cache_bytes"), row.get("working_set_bytes") or 0
        if cache and ws <= cache:
            row["mbu"] = None
            row["roofline_note"] = (f"in cache: {_mib(ws)} read per step fit the "
                                    f"{_mib(cache)} last-level cache, no MBU")
            continue
        row["mbu"] = row["gbps"] / bw["gbps"]


def _tolerance(entry: dict[str, Any]) -> float:
    return max(entry.get("spread") or 0.0, MIN_TOLERANCE)


def mark_impossible(rows: list[dict[str, Any]], peaks: dict[str, Any]) -> None:
    """Status "impossible" (with the reason, the figure withheld) for every ok row above
    what this run measured the machine can do (see the module docstring)."""
    for row in rows:
        if row["status"] != "ok":
            continue
        why = []
        key, peak = row.get("best_peak_key"), row.get("best_peak_gflops")
        if row.get("gflops") is not None and key and peak:
            tol = _tolerance(peaks.get(key, {}))
            if row["gflops"] > peak * (1 + tol):
                why.append(f"{row['gflops']:.1f} GFLOP/s is {row['gflops'] / peak:.0%} of the "
                           f"fastest {row['precision']} matmul measured in this run ({key} "
                           f"{peak:.1f} GFLOP/s, spread {tol:.0%}): this workload's FLOP "
                           "count must be wrong")
                row["claimed_gflops"] = row["gflops"]
                row.update(gflops=None, mfu=None, mfu_best=None)
        bkey, bw = row.get("bandwidth_key"), row.get("bandwidth_gbps")
        if row.get("mbu") is not None and bkey and bw:
            entry = peaks.get(bkey, {})
            cache, ws = entry.get("cache_bytes"), row.get("working_set_bytes") or 0
            tol = _tolerance(entry)
            if row["gbps"] > bw * (1 + tol):
                if cache and ws <= CACHE_FACTOR * cache:  # partly served from the cache
                    row["roofline_note"] = (f"partly in cache: {_mib(ws)} read per step, "
                                            f"under {CACHE_FACTOR}x the {_mib(cache)} "
                                            "last-level cache, no MBU")
                    row["mbu"] = None
                else:
                    why.append(f"{row['gbps']:.1f} GB/s is {row['gbps'] / bw:.0%} of the "
                               f"memory bandwidth measured in this run ({bkey} {bw:.1f} "
                               f"GB/s, spread {tol:.0%}): this workload's byte count must be "
                               "wrong")
                    row["claimed_gbps"] = row["gbps"]
                    row.update(gbps=None, mbu=None)
        if why:
            row["status"] = "impossible"
            row["reason"] = "impossible: " + "; ".join(why)


def add_best_peak_mfu(rows: list[dict[str, Any]], peaks: dict[str, Any]) -> None:
    """MFU against the best matmul measured on the machine, beside each backend's own.

    `mfu` divides by the backend's own library's matmul peak (np.matmul for numpy-f32), so it
    says how close the code gets to its library. `mfu_best` divides by the fastest matmul of
    the same device and precision measured in this run (np.matmul's or torch.mm's float32 on
    the CPU): where one BLAS is faster (MKL against OpenBLAS on Intel), a backend can then be
    seen to lose to its library rather than to its code. `best_peak_key` names that matmul.
    """
    for row in rows:
        row.update(best_peak_key=None, best_peak_gflops=None, mfu_best=None)
        if row["status"] != "ok" or row["gflops"] is None:
            continue
        suffix = f"-{row['device']}-{row['precision']}"  # peak keys: framework-device-precision
        same = {k: p["gflops"] for k, p in peaks.items()
                if k.endswith(suffix) and p.get("status") == "ok" and p.get("gflops")
                and p.get("kind", "matmul") == "matmul"}
        if same:
            key = max(same, key=same.get)
            row.update(best_peak_key=key, best_peak_gflops=same[key],
                       mfu_best=row["gflops"] / same[key])
