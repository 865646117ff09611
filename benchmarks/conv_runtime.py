"""Conv runtime cost: event-driven scatter vs dense im2col, per layer and per inference.

1. Per layer: the accumulation of one layer of the runtime (``runtime.conv_ops.ConvOp`` /
   ``LinearOp``, the code the session runs), on random binary inputs at imposed spike rates, one
   call of ``--batch`` maps (default 4: the T steps of one image). Prints the median time of each path and the ratio dense / event (> 1: events
   win).
2. Per inference: a whole VGG-style bundle (28x28, T steps), batch 1, each path, with the spike
   rates the random net really has.

``time_bundle(bundle, images, method)`` is the function the pruning evaluation uses to time a
bundle per inference (shrunk vs unshrunk). Medians over repeats after a warm-up.

3. ``--compiled``: the compiled conv core's two paths per layer (one step of a one-layer bundle
   whose image is the spike map: 8-bit direct input at scale 1), the switch points behind
   ``runtime.conv_compiled.DENSE_MIN_ACTIVITY``.
4. ``--sca-cache DIR``: the trained SCA-25% MNIST models of ``benchmarks/sca_eval.py``'s cache
   (shrunk and unshrunk, every seed found) on the compiled core, the numpy core and onnxruntime
   int8 (the same bundle's ONNX step graph), batch 1 and 32, interleaved image by image in one
   process; ``--write`` puts the tables in ``docs/results/conv_runtime.md`` (and ``.json``).

BLAS runs on one thread (set OPENBLAS_NUM_THREADS / OMP_NUM_THREADS to change it): a board
runs one inference per core, and a multithreaded BLAS on a busy machine measures the scheduler.

    python benchmarks/conv_runtime.py [--repeats 20] [--json]
    python benchmarks/conv_runtime.py --compiled --sca-cache out/sca-eval-cache --write
"""

from __future__ import annotations

import argparse
import json
import os
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy is imported
from typing import Any, Callable, Dict, List

import numpy as np  # noqa: E402

from spikeedge.runtime import bundle as fmt  # noqa: E402
from spikeedge.runtime.conv_ops import ConvOp, LinearOp  # noqa: E402
from spikeedge.runtime.conv_session import ConvSession  # noqa: E402

RATES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
# (name, in channels, out channels, input size): the layers of 28x28 VGG-style nets of a few widths
CONV_LAYERS = [("8->16 @28", 8, 16, 28), ("32->64 @14", 32, 64, 14), ("64->128 @7", 64, 128, 7), ("128->128 @14", 128, 128, 14)]
LINEAR_LAYERS = [("784->128", 784, 128), ("3136->256", 3136, 256), ("256->10", 256, 10)]


def median_ms(fn: Callable[[], Any], repeats: int, min_seconds: float = 0.02) -> float:
    """Median wall time of ``fn`` in ms; each repeat loops enough calls to last ``min_seconds``."""
    fn()  # warm-up
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    loops = max(1, int(min_seconds / once))
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        runs.append((time.perf_counter() - t0) / loops)
    return 1e3 * float(np.median(runs))


def time_bundle(bundle: Any, images: np.ndarray, method: str = "auto", repeats: int = 10) -> Dict[str, float]:
    """Milliseconds per inference (one image, ``time_steps`` steps, batch 1) of a conv bundle:
    the median over ``repeats`` passes over ``images`` (N, C, H, W) after a warm-up pass."""
    session = ConvSession(bundle, method=method)
    images = np.asarray(images, np.float64)

    def one_pass() -> None:
        for img in images:
            session.run(img[None])

    one_pass()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        one_pass()
        runs.append((time.perf_counter() - t0) / len(images))
    return {"ms_per_inference": 1e3 * float(np.median(runs)), "images": len(images), "repeats": repeats, "method": method}


def conv_layer(c_in: int, c_out: int, rng: np.random.Generator) -> fmt.ConvLifLayer:
    w = rng.integers(-127, 128, size=(c_out, c_in, 3, 3)).astype(np.int8)
    return fmt.ConvLifLayer("c", c_in, c_out, 3, 3, 1, 1, 65536, 16, w, np.ones(c_out, np.int64), np.zeros(c_out, np.int32), np.ones(c_out))


def linear_layer(n_in: int, n_out: int, rng: np.random.Generator) -> fmt.LinearLifLayer:
    w = rng.integers(-127, 128, size=(n_out, n_in)).astype(np.int8)
    return fmt.LinearLifLayer("l", n_in, n_out, 65536, 16, w, np.ones(n_out, np.int64), np.zeros(n_out, np.int32), np.ones(n_out))


def per_layer(repeats: int, batch: int = 4) -> List[Dict[str, Any]]:
    """Each layer's two paths on ``batch`` input maps at a time: a run goes layer by layer over
    all T steps, so a layer of a one-image inference sees T maps per call (4 here)."""
    rng = np.random.default_rng(0)
    rows = []
    for name, c_in, c_out, size in CONV_LAYERS:
        op = ConvOp(conv_layer(c_in, c_out, rng), (c_in, size, size), 1)
        for rate in RATES:
            x = (rng.random((batch, c_in, size, size)) < rate).astype(np.uint8)
            assert np.array_equal(op.event(x)[0], op.dense(x)[0])
            rows.append({"layer": "conv " + name, "rate": rate, "event_ms": median_ms(lambda: op.event(x), repeats),
                         "dense_ms": median_ms(lambda: op.dense(x), repeats)})
    for name, n_in, n_out in LINEAR_LAYERS:
        lop = LinearOp(linear_layer(n_in, n_out, rng), 1)
        for rate in RATES:
            x = (rng.random((batch, n_in)) < rate).astype(np.uint8)
            assert np.array_equal(lop.event(x)[0], lop.dense(x)[0])
            rows.append({"layer": "linear " + name, "rate": rate, "event_ms": median_ms(lambda: lop.event(x), repeats),
                         "dense_ms": median_ms(lambda: lop.dense(x), repeats)})
    for row in rows:
        row["dense_over_event"] = row["dense_ms"] / row["event_ms"]
    return rows


def vgg_bundle(width: int, seed: int = 0, time_steps: int = 4):
    """A random VGG-style bundle for 1x28x28: conv w, conv w, pool, conv 2w, conv 2w, pool, fc 128, readout 10."""
    from spikeedge.offline.folded import FoldedConv, FoldedFlatten, FoldedLinear, FoldedNet, FoldedPool
    from spikeedge.offline.quantize_conv import quantize_folded

    rng = np.random.default_rng(seed)

    def conv(i: int, o: int) -> FoldedConv:
        return FoldedConv(rng.normal(0, 2.0 / np.sqrt(9 * i), (o, i, 3, 3)), rng.normal(0.0, 0.1, o), 1, 1, 0.8, 1.0)

    def fc(i: int, o: int, spiking: bool) -> FoldedLinear:
        return FoldedLinear(rng.normal(0, 2.0 / np.sqrt(i), (o, i)), np.zeros(o), spiking, 0.8, 1.0)

    w = width
    layers = [conv(1, w), conv(w, w), FoldedPool(2), conv(w, 2 * w), conv(2 * w, 2 * w), FoldedPool(2), FoldedFlatten(),
              fc(2 * w * 49, 128, True), fc(128, 10, False)]
    net = FoldedNet((1, 28, 28), time_steps, layers, 10)
    return quantize_folded(net, np.ones((1, 1, 28, 28)))


def per_inference(repeats: int) -> List[Dict[str, Any]]:
    rng = np.random.default_rng(1)
    images = rng.random((4, 1, 28, 28)) * (rng.random((4, 1, 28, 28)) < 0.2)  # MNIST-like: ~20% non-zero pixels
    rows = []
    for width in (8, 16, 32):
        bundle = vgg_bundle(width)
        result = ConvSession(bundle).run(images)
        rates = {k: round(v, 3) for k, v in result.summary()["spike_rate"].items()}
        row: Dict[str, Any] = {"net": "vgg width %d" % width, "spike_rate": rates}
        for method in ("event", "dense", "auto"):
            row[method + "_ms"] = time_bundle(bundle, images, method, repeats)["ms_per_inference"]
        rows.append(row)
    return rows


def compiled_layers(repeats: int) -> List[Dict[str, Any]]:
    """Each layer of ``CONV_LAYERS`` / ``LINEAR_LAYERS`` as a one-layer bundle on the compiled core:
    ms per ``step`` (encode, accumulate, neurons, a 1-output readout) on each path at each rate."""
    from spikeedge.runtime.conv_compiled import CompiledConvSession

    rng = np.random.default_rng(2)
    rows = []
    specs = [("conv " + n, (c, s, s), conv_layer(c, o, rng)) for n, c, o, s in CONV_LAYERS]
    specs += [("linear " + n, (i, 1, 1), linear_layer(i, o, rng)) for n, i, o in LINEAR_LAYERS]
    for name, shape, layer in specs:
        layers = (layer,) if layer.kind == "conv_lif" else (fmt.FlattenLayer("f"), layer)
        out_n = int(np.prod(layer.out_shape(shape))) if layer.kind == "conv_lif" else layer.n_out
        if layer.kind == "conv_lif":
            layers = layers + (fmt.FlattenLayer("f"),)
        ro = fmt.LinearReadout("r", out_n, 1, np.ones((1, out_n), np.int8), np.ones(1), np.zeros(1))
        bundle = fmt.ConvBundle(fmt.DirectEncoder(int(np.prod(shape)), 1.0, 8), shape, 1, layers, ro)
        sessions = {m: CompiledConvSession(bundle, method=m) for m in ("event", "dense")}
        for rate in RATES + (0.5, 0.7):
            x = (rng.random((1,) + shape) < rate).astype(np.float64)  # scale 1: the image is the spike map
            row: Dict[str, Any] = {"layer": name, "rate": rate}
            for m, s in sessions.items():
                row[m + "_ms"] = median_ms(lambda s=s, x=x: s.step(x), repeats)
            row["dense_over_event"] = row["dense_ms"] / row["event_ms"]
            rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--batch", type=int, default=4, help="input maps per layer call (T steps x images; default 4)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--compiled", action="store_true", help="the compiled core's event/dense switch points per layer")
    ap.add_argument("--sca-cache", type=str, default=None, help="sca_eval.py's cache: time its SCA-25%% models on every core")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of the SCA comparison (each: 40 images at batch 1, 4 batches of 32)")
    ap.add_argument("--write", action="store_true", help="write docs/results/conv_runtime.md and .json")
    ap.add_argument("--callgrind", action="store_true", help="also count instructions per image (valgrind) of the SCA models")
    args = ap.parse_args()
    if args.compiled or args.sca_cache:
        from conv_compare import report, sca_compare  # noqa: E402  (beside this file)

        switch = compiled_layers(args.repeats) if args.compiled else []
        for r in switch:
            print("%-22s %6.2f event %8.4f ms  dense %8.4f ms  d/e %.2f" % (r["layer"], r["rate"], r["event_ms"], r["dense_ms"], r["dense_over_event"]))
        sca = sca_compare(args.sca_cache, args.rounds, args.callgrind) if args.sca_cache else None
        print(report(switch, sca, args.write))
        return
    layers = per_layer(args.repeats, args.batch)
    nets = per_inference(max(3, args.repeats // 3))
    if args.json:
        print(json.dumps({"per_layer": layers, "per_inference": nets}))
        return
    print("%-22s %6s %10s %10s %8s" % ("layer (batch %d)" % args.batch, "rate", "event ms", "dense ms", "d/e"))
    for r in layers:
        print("%-22s %6.2f %10.4f %10.4f %8.2f" % (r["layer"], r["rate"], r["event_ms"], r["dense_ms"], r["dense_over_event"]))
    print()
    for r in nets:
        print("%-16s event %.2f ms  dense %.2f ms  auto %.2f ms per inference   rates %s" % (r["net"], r["event_ms"], r["dense_ms"], r["auto_ms"], r["spike_rate"]))


if __name__ == "__main__":
    main()
