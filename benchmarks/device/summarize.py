"""Markdown rows for benchmarks/README.md from a ``features_cuda`` result (issue 17's GPU check).

Usage (here, after the device call; the tool copies $OUT's files to its ``files_at`` folder)::

    python benchmarks/device/summarize.py /path/to/features_cuda.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _n(r: dict[str, Any], key: str) -> str:
    """A rate, rounded with thousands separators; "—" when the result has none (off CUDA: no copy floor)."""
    return f"{r[key]:,.0f}" if r.get(key) is not None else "—"


def rows(res: dict[str, Any]) -> list[str]:
    """One table row per (precision, decode threads), then the decode, layer and numerics lines."""
    if "skipped" in res:
        return [f"skipped: {res['skipped']}"]
    out = [
        f"{res['gpu']}, {res['cpus']} CPUs, torch {res['torch']}, {res['model']} ({res['weights']}), "
        f"{res['n_images']} images, batch {res['batch']}, "
        f"load {res['load_average_before']} → {res['load_average_after']}",
        "",
        "| precision | decode threads | (a) bare forward, on the GPU | (a') with host → device copy | (b) decode "
        "| **ours** | **ours / min(a, b)** (per round) |",
        "|---|---|---|---|---|---|---|",
    ]
    for w in res["worker_counts"]:
        for precision in ("float32", "bfloat16"):
            r = res[f"{precision}_workers{w}"]
            rounds = ", ".join(f"{x:.2f}" for x in r["ratio_vs_min_floor_per_round"])
            floors = " | ".join(_n(r, k) for k in ("bare_forward_img_s", "bare_forward_h2d_img_s", "decode_img_s"))
            out.append(f"| {precision} | {w} | {floors} | **{_n(r, 'extract_img_s')}** "
                       f"| **{r['ratio_vs_min_floor']:.2f}** ({rounds}) |")  # fmt: skip
    d, lay, num = res["decode"], res["layers"], res["numerics"]
    first = res["float32_workers" + str(res["worker_counts"][0])]
    names = [k for k in d if k.startswith("decode_threads")]
    threads = " / ".join(_n(d, k) for k in names)
    out += [
        "",
        f"- decode alone, {d['decode_n_images']} images: {' / '.join(map(str, res['worker_counts']))} threads "
        f"{threads}; one thread {d['decode_one_thread_img_s']:,.0f}; DataLoader {d['dataloader_processes']} processes "
        f"{d['decode_dataloader_processes_img_s']:,.0f} (threads / DataLoader {d['threads_over_dataloader']:.2f}×)",
        f"- sequential (workers=0, float32) {first['extract_sequential_img_s']:,.0f}; pipelined / sequential "
        f"{first['pipelined_over_sequential']:.2f}×",
        f"- {lay['layers']} blocks in one pass vs one pass each ({lay['layers_n_images']} images): "
        f"{lay['all_layers_one_pass_s']:.2f} s vs {lay['single_layer_passes_sum_s']:.2f} s "
        f"(**{lay['sum_over_one_pass']:.1f}×**); srp:4096 of all {lay['all_layers_srp4096_one_pass_s']:.2f} s; "
        f"single-block hit {lay['single_layer_after_many_hit_s']:.2f} s",
        f"- vs the CPU ({num['n_images']} images, largest |diff| / largest |feature|): float32 defaults "
        f"{num['float32_default_rel']:.1e}, float32 TF32 off {num['float32_no_tf32_rel']:.1e}, "
        f"bfloat16 {num['bfloat16_rel']:.1e}",
    ]
    return out


if __name__ == "__main__":
    print("\n".join(rows(json.loads(Path(sys.argv[1]).read_text()))))
