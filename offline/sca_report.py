"""The per-layer report of an SCA run: channels, parameters, MACs and synaptic operations of the
pruned network beside the dense one, as a dict and as Markdown (``prune sca --report``)."""

from __future__ import annotations

from typing import Any, Dict, List

import torch
from torch import nn

from .convsnn import ConvSNN, count_ops


def layer_report(dense: ConvSNN, pruned: ConvSNN, x: torch.Tensor) -> Dict[str, Any]:
    """Per conv/linear layer of the dense and the pruned (shrunk) network, per inference on
    images ``x``: output channels kept/total, parameters, dense MACs, synaptic operations."""
    a, b = count_ops(dense, x), count_ops(pruned, x)
    mods_a = dict(dense.named_modules())
    mods_b = dict(pruned.named_modules())
    rows = []
    for ra, rb in zip(a, b):
        ma, mb = mods_a[ra["layer"]], mods_b[rb["layer"]]
        out_a = ma.out_channels if isinstance(ma, nn.Conv2d) else ma.out_features
        out_b = mb.out_channels if isinstance(mb, nn.Conv2d) else mb.out_features
        rows.append({"layer": ra["layer"], "kind": "conv" if isinstance(ma, nn.Conv2d) else "linear",
                     "channels": [out_b, out_a], "params": [rb["params"], ra["params"]], "macs": [rb["macs"], ra["macs"]],
                     "synops": [round(rb["synops"], 1), round(ra["synops"], 1)], "spiking_input": ra["spiking_input"]})
    tot = {k: [sum(r[k][0] for r in rows), sum(r[k][1] for r in rows)] for k in ("params", "macs", "synops")}
    return {"layers": rows, "total": tot, "images": len(x), "order": "each pair is [pruned, dense]"}


def report_markdown(rep: Dict[str, Any], title: str) -> str:
    lines = ["# %s" % title, "", "Per inference (T steps), measured on %d test images; each cell is pruned / dense." % rep["images"], "",
             "| layer | kind | out channels | parameters | dense MACs | synaptic ops |", "|---|---|---|---|---|---|"]
    for r in rep["layers"] + [dict(layer="total", kind="", channels=["", ""], **rep["total"])]:
        lines.append("| %s | %s | %s / %s | %s / %s | %s / %s | %.0f / %.0f |" % (
            r["layer"], r["kind"], r["channels"][0], r["channels"][1], r["params"][0], r["params"][1], r["macs"][0], r["macs"][1],
            r["synops"][0], r["synops"][1]))
    lines += ["", "Synaptic operations: input spikes x fan-out; the stem's input is the real-valued image (direct encoding), so its count is its dense MACs."]
    return "\n".join(lines) + "\n"


def regrowth_summary(events: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Swaps (``regrown``) and revivals (``revived_now``) over the prune events: totals, the
    mean per event, and the number of events where regrowth changed anything."""
    n = len(events)
    swaps = [int(e["regrown"]) for e in events]
    revived = [int(e["revived_now"]) for e in events]
    return {"events": n, "swaps": sum(swaps), "revivals": sum(revived), "swaps_per_event": sum(swaps) / n if n else 0.0,
            "revivals_per_event": sum(revived) / n if n else 0.0, "events_with_swaps": sum(1 for v in swaps if v)}
