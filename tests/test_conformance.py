"""Conformance suite: every deployable form of a model computes the same network.

For a recurrent SNN (Mackey-Glass forecasting, direct-current input; digits classification,
rate-coded input) and a convolutional SNN (digits), each form - the event-driven bundle, the
ONNX step graph on onnxruntime, the TFLite step graph on ai-edge-litert - is held against the
offline integer reference (``offline/intref*.py``, dense torch int64):

* open-loop spike agreement >= 99.5% in every layer (every step starts from the reference's
  state; ``measure/verify.py``); the bundle and the ONNX graph are in fact bit-exact;
* task metric within 1 point of accuracy or 5% relative sMAPE of the reference's;
* the files really hold int8 weights: no float weight tensor of rank >= 2 in a quantized layer;
* export -> load -> run in a fresh Python process gives the in-process outputs.

Int8 results may differ slightly between interpreters and CPUs: TFLite is held to tolerances.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest

from spikeedge.offline.convsnn import fold
from spikeedge.offline.convtrain import config_for, load_images, train_convsnn
from spikeedge.offline.export_onnx import export_onnx
from spikeedge.offline.export_tflite import export_tflite
from spikeedge.offline.hrsnn import HrsnnConfig
from spikeedge.offline.intref import IntegerReference
from spikeedge.offline.intref_conv import ConvIntegerReference
from spikeedge.offline.pipeline import calibration_inputs, train_hrsnn
from spikeedge.offline.quantize import quantize_hrsnn
from spikeedge.offline.quantize_conv import quantize_folded
from spikeedge.runtime import bundle as fmt
from spikeedge.runtime.backends import open_model
from spikeedge.measure.verify import THRESHOLDS, open_loop, task_metric
from spikeedge.tasks.registry import load_task

FORMS = ("bundle", "onnx", "tflite")
SUFFIX = {"bundle": ".seb", "onnx": ".onnx", "tflite": ".tflite"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _hrsnn_case(task_name: str, encoder: str, n: int, seed: int) -> Dict[str, Any]:
    task = load_task(task_name, repeats=5) if task_name == "mackey-glass" else load_task(task_name)
    model, _ = train_hrsnn(task, HrsnnConfig(n_neurons=n, seed=seed, encoder=encoder, encoder_gain=1.0))
    bundle = fmt.loads(fmt.dumps(quantize_hrsnn(model, calibration_inputs(task), output=task.output)))
    if task.kind == "forecast":
        xs = np.stack([w.train_x for w in task.windows]).reshape(len(task.windows), -1, 1)[:, :400]
    else:
        task.x_test, task.y_test = task.x_test[:200], task.y_test[:200]
        xs = np.asarray(task.x_test[:40], np.float64)
    return {"bundle": bundle, "task": task, "xs": xs, "steps": None, "reference": IntegerReference(bundle)}


def _conv_case() -> Dict[str, Any]:
    data = load_images("digits")
    model, _ = train_convsnn(data, config_for(data, width=0.5, seed=0), epochs=2, batch_size=32)
    bundle = fmt.loads(fmt.dumps(quantize_folded(fold(model), data.x_train[:300].numpy())))
    task = load_task("digits")
    task.x_test, task.y_test = task.x_test[:200], task.y_test[:200]
    return {"bundle": bundle, "task": task, "xs": data.x_test[:40].numpy().astype(np.float64), "steps": bundle.time_steps,
            "reference": ConvIntegerReference(bundle)}


CASES = {
    "hrsnn-mackey-glass": lambda: _hrsnn_case("mackey-glass", "direct", 150, 3),
    "hrsnn-digits-rate": lambda: _hrsnn_case("digits", "rate", 200, 1),
    "conv-digits": _conv_case,
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request: Any, tmp_path_factory: Any) -> Dict[str, Any]:
    c = CASES[request.param]()
    folder = tmp_path_factory.mktemp(request.param)
    c["files"] = {}
    for form in FORMS:
        path = folder / ("model" + SUFFIX[form])
        if form == "bundle":
            fmt.save(c["bundle"], path)
        elif form == "onnx":
            export_onnx(c["bundle"], path)
        else:
            export_tflite(c["bundle"], path)
        c["files"][form] = path
    c["name"] = request.param
    c["ref_metric"] = task_metric(c["reference"], c["task"])
    return c


@pytest.mark.parametrize("form", FORMS)
def test_open_loop_spikes_agree_with_the_integer_reference(case: Dict[str, Any], form: str) -> None:
    session = open_model(case["files"][form])
    report = open_loop(session, case["reference"], case["xs"], steps=case["steps"])
    rates = {k: v for k, v in case["reference"].spike_counts.items()}
    assert sum(rates.values()) > 0, "a silent network proves nothing"
    assert report["min_spike_agreement"] >= THRESHOLDS["open_loop_spike_agreement"], report
    if form in ("bundle", "onnx"):  # integer arithmetic: bit-exact
        assert report["min_spike_agreement"] == 1.0 and report["max_membrane_difference"] == 0, report
    else:  # float32 arithmetic: the first layer (identical inputs) within a few state units
        first = next(iter(report["membrane_difference_per_layer"].values()))  # of the threshold's 16384
        assert first <= 64, report


@pytest.mark.parametrize("form", FORMS)
def test_task_metric_within_tolerance_of_the_reference(case: Dict[str, Any], form: str) -> None:
    got = task_metric(open_model(case["files"][form]), case["task"])
    ref = case["ref_metric"]
    if "accuracy" in ref:
        assert ref["accuracy"] > 0.3  # well above chance (0.1): the metric means something
        assert 100 * abs(got["accuracy"] - ref["accuracy"]) <= THRESHOLDS["accuracy_points"], (got, ref)
    else:
        assert abs(got["smape"] - ref["smape"]) / ref["smape"] <= THRESHOLDS["smape_relative"], (got, ref)
    if form != "tflite":
        assert got.get("accuracy", got.get("smape")) == ref.get("accuracy", ref.get("smape"))


def test_onnx_file_holds_int8_weights(case: Dict[str, Any]) -> None:
    import onnx
    from onnx import TensorProto

    model = onnx.load(str(case["files"]["onnx"]))
    floats = [t.name for t in model.graph.initializer if t.data_type in (TensorProto.FLOAT, TensorProto.DOUBLE) and len(t.dims) >= 2]
    assert not floats  # no float weight tensor at all
    int8 = {t.name for t in model.graph.initializer if t.data_type == TensorProto.INT8}
    dequantized = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    products = [n for n in model.graph.node if n.op_type in ("MatMul", "Conv", "MatMulInteger")]
    assert products
    for n in products:  # every weight operand is an int8 initializer, dequantized (or cast) on the way
        w = n.input[1]
        if n.op_type == "MatMulInteger":  # spikes (uint8) x int8 weights: an integer product
            assert w in int8, (n.name, w)
            continue
        source = dequantized.get(w)
        if source is None:  # the readout's double product: Cast(DequantizeLinear(int8))
            cast = next(m for m in model.graph.node if m.output[0] == w)
            source = dequantized[cast.input[0]]
        assert source in int8, (n.name, w)


def test_tflite_file_holds_int8_weights(case: Dict[str, Any]) -> None:
    import ai_edge_litert.schema_py_generated as s

    m = s.ModelT.InitFromPackedBuf(case["files"]["tflite"].read_bytes(), 0)
    g = m.subgraphs[0]
    const = [t for t in g.tensors if t.buffer and m.buffers[t.buffer].data is not None and len(t.shape) >= 2]
    assert not [t.name for t in const if t.type in (s.TensorType.FLOAT32, s.TensorType.FLOAT16)]  # no float weights
    code = lambda o: m.operatorCodes[o.opcodeIndex].builtinCode  # noqa: E731
    dequantized = {o.outputs[0]: o.inputs[0] for o in g.operators if code(o) == s.BuiltinOperator.DEQUANTIZE}
    products = [o for o in g.operators if code(o) in (s.BuiltinOperator.FULLY_CONNECTED, s.BuiltinOperator.CONV_2D)]
    assert products
    for o in products:  # every weight operand is an int8 constant behind DEQUANTIZE
        assert g.tensors[dequantized[o.inputs[1]]].type == s.TensorType.INT8


def test_float_exports_hold_no_int8(case: Dict[str, Any], tmp_path: Path) -> None:
    """``--float``: the same values as float32 tensors (the latency baseline), same outputs."""
    import onnx

    export_onnx(case["bundle"], tmp_path / "f.onnx", float_weights=True)
    model = onnx.load(str(tmp_path / "f.onnx"))
    assert not [t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    a = open_model(tmp_path / "f.onnx").run(case["xs"])
    b = open_model(case["files"]["onnx"]).run(case["xs"])
    assert np.array_equal(a.outputs, b.outputs)


FRESH = r"""
import json, sys
import numpy as np
from spikeedge.runtime.backends import open_model
path, inputs, out = sys.argv[1:4]
x = np.load(inputs)["x"]
result = open_model(path).run(x)
np.savez(out, outputs=result.outputs)
print(json.dumps({"spikes": result.spike_counts, "synops": result.synops}))
"""


@pytest.mark.parametrize("form", FORMS)
def test_export_load_run_in_a_fresh_process(case: Dict[str, Any], form: str, tmp_path: Path) -> None:
    x = case["xs"][:4]
    np.savez(tmp_path / "x.npz", x=x)
    proc = subprocess.run([sys.executable, "-c", FRESH, str(case["files"][form]), str(tmp_path / "x.npz"), str(tmp_path / "y.npz")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    fresh = json.loads(proc.stdout.strip().splitlines()[-1])
    here = open_model(case["files"][form]).run(x)
    with np.load(tmp_path / "y.npz") as y:
        np.testing.assert_allclose(y["outputs"], here.outputs, rtol=0, atol=1e-12)
    assert fresh["spikes"] == here.spike_counts and fresh["synops"] == here.synops
    bundle_run = open_model(case["files"]["bundle"]).run(x)
    assert fresh["synops"] == bundle_run.synops  # every backend counts operations the same way
