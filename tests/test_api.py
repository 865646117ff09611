"""The Python API (``spikeedge.api``): ``docs/api.md``'s code blocks run as written, in order,
in one namespace (so the docs cannot go stale), and their results are checked; the API module is
torch-free to import and its board half works with torch blocked.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "api.md"


def doc_blocks() -> List[str]:
    """The fenced ``python`` blocks of docs/api.md, in order."""
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None) -> Dict[str, Any]:
    """Run every block of the docs in a scratch folder (one torch thread, as the other training
    tests); the namespace they leave."""
    import os

    pytest.importorskip("torch")
    blocks = doc_blocks()
    assert len(blocks) >= 3, "docs/api.md lost its runnable examples"
    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("api-doc"))
    ns: Dict[str, Any] = {"__name__": "docs_api"}
    try:
        for i, code in enumerate(blocks):
            exec(compile(code, "%s:block%d" % (DOC.name, i + 1), "exec"), ns)
        ns["_cwd"] = Path.cwd()
    finally:
        os.chdir(here)
    return ns


def test_the_docs_recurrent_walkthrough_runs_and_makes_what_it_says(ran: Dict[str, Any]) -> None:
    from spikeedge.runtime import bundle as fmt

    se, record = ran["se"], ran["record"]
    assert record["pruning"]["method"] == "lnp" and record["pruning"]["neurons"] == 20  # half of 40
    assert record["task"] == "mackey-glass" and "lambda" in record["training"]  # the ridge readout's record
    assert ran["trained"].cfg.n_neurons == 20 and ran["model"].cfg.n_neurons == 40  # the input model is not changed
    path = ran["_cwd"] / "mg.seb"
    loaded = fmt.load(path)
    assert loaded.sha256 == ran["bundle"].sha256
    assert loaded.provenance["pruning"]["method"] == "lnp"  # the record travels into the bundle
    # int8 follows the float model on the same windows (the demo's tolerance: a few percent)
    f, q = se.evaluate(ran["trained"], ran["task"])["smape"], se.evaluate(loaded, ran["task"])["smape"]
    assert abs(q - f) / f < 0.15


def test_one_digest_names_the_bundle_in_info_bench_and_the_card(ran: Dict[str, Any], capsys: pytest.CaptureFixture) -> None:
    from spikeedge.cli.app import main
    from spikeedge.measure.bench_record import model_record
    from spikeedge.runtime import bundle as fmt

    path = ran["_cwd"] / "mg.seb"
    digest = fmt.file_sha256(path)
    assert ran["ids"] == {"path": "mg.seb", "bundle_sha256": digest, "file_sha256": digest}
    assert main(["info", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sha256"] == digest
    session = ran["se"].open_session(path)
    assert model_record(path, session)["sha256"] == digest  # what bench stores in the results store
    from spikeedge.runtime.stepgraph import card_for

    assert card_for(fmt.load(path), "onnx")["bundle_sha256"] == digest


def test_stepping_the_session_equals_running_the_sequence(ran: Dict[str, Any]) -> None:
    stepped = np.concatenate(ran["ys"])  # (steps, 1)
    assert np.array_equal(stepped, ran["result"].outputs[0])
    assert ran["result"].summary()["synops_per_step"] > 0


def test_the_docs_conv_walkthrough_prunes_shrinks_and_quantizes(ran: Dict[str, Any]) -> None:
    small, conv, crecord = ran["small"], ran["conv"], ran["crecord"]
    channels = crecord["pruning"]["channels"]
    assert channels["kept"] == channels["total"] // 2
    assert crecord["pruning"]["accuracy"]["dense"] > 0.5  # trained: chance is 0.1
    assert small.n_parameters() < conv.n_parameters()
    assert ran["cbundle"].model == "conv" and ran["logits"].shape == (4, 10)
    # the int8 bundle classifies as the float network does on most test images
    from spikeedge.offline.convtrain import predict

    images = ran["images"]
    float_pred = predict(small, images.x_test).argmax(1).numpy()
    int8_pred = ran["se"].open_session(ran["cbundle"], batch=len(float_pred)).infer_images(images.x_test.numpy()).argmax(1)
    assert np.mean(float_pred == int8_pred) > 0.8


def test_checkpoint_round_trip_and_bad_input_refused_in_one_line(ran: Dict[str, Any], tmp_path: Path) -> None:
    import torch

    from spikeedge.errors import ModelError

    se = ran["se"]
    se.save_checkpoint(ran["trained"], tmp_path / "mg.ckpt.npz", ran["record"])
    model, rec = se.load_checkpoint(tmp_path / "mg.ckpt.npz")
    assert rec["pruning"]["method"] == "lnp"
    for a, b in zip(model.state_dict().values(), ran["trained"].state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ModelError, match="kept fraction"):
        se.prune_lnp(ran["model"], target_neurons=1.5)
    with pytest.raises(ModelError, match=r"\.onnx or \.tflite"):
        se.export_graph(ran["bundle"], tmp_path / "x.bin")


CHILD = textwrap.dedent(
    """
    import json, sys

    class RefuseTorch:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "scipy", "sklearn", "networkx"):
                raise ImportError("No module named %r (blocked: board install)" % name)
            return None

    sys.meta_path.insert(0, RefuseTorch())
    import numpy as np
    import spikeedge.api as se
    from spikeedge.errors import MissingExtraError

    task = se.load_task("mackey-glass", repeats=1)
    session = se.open_session(sys.argv[1])
    session.start(1)
    y = session.step(np.zeros((1, 1)))
    out = {"shape": list(y.shape), "smape": se.evaluate(se.load(sys.argv[1]), task)["smape"]}
    try:
        se.build_hrsnn(neurons=10)
    except MissingExtraError as exc:
        out["refused"] = str(exc)
    print(json.dumps(out))
    """
)


def test_the_board_half_of_the_api_needs_no_torch(ran: Dict[str, Any]) -> None:
    import os

    import spikeedge

    env = dict(os.environ, PYTHONPATH=str(Path(spikeedge.__path__[0]).parent))  # the package as this process sees it
    proc = subprocess.run([sys.executable, "-c", CHILD, str(ran["_cwd"] / "mg.seb")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["shape"] == [1, 1] and np.isfinite(out["smape"])
    assert "spikeedge[offline]" in out["refused"] and "\n" not in out["refused"]


def test_the_package_help_points_to_the_api_docs() -> None:
    import spikeedge
    import spikeedge.api

    assert "docs/api.md" in (spikeedge.__doc__ or "") and "docs/api.md" in (spikeedge.api.__doc__ or "")
    for name in spikeedge.api.__all__:
        assert (getattr(spikeedge.api, name).__doc__ or "").strip(), name


def test_export_graph_writes_a_step_graph_whose_card_names_the_bundle(ran: Dict[str, Any], tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from spikeedge.runtime.backends import open_model

    se, bundle = ran["se"], ran["bundle"]
    se.export_graph(bundle, tmp_path / "mg.onnx")
    assert se.identity(tmp_path / "mg.onnx")["bundle_sha256"] == bundle.sha256
    x = ran["x"].transpose(1, 0, 2)
    graph, event = open_model(tmp_path / "mg.onnx"), se.open_session(bundle)
    assert np.array_equal(graph.run(x).outputs, event.run(x).outputs)  # the step graph is bit-exact with the runtime
