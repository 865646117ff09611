"""Reading a NIR graph (the Neuromorphic Intermediate Representation, the ``nir`` package) into
the one shape spikeedge imports: a chain from the input to the output, each neuron node with at
most one recurrent weight node looping on it.

Why a chain: spikeedge's models are a sequence of layers (``offline/folded.py``) or one
recurrent layer (``offline/hrsnn.py``); a graph that branches or merges has no such form, and
is refused in one line naming the node, never reshaped. Nested graphs (what older snnTorch and
nirtorch versions wrote for ``RLeaky`` / ``RSynaptic``) are inlined first; nirtorch 2.x writes the
loop flat (``1.lif -> 1.w_rec -> 1.lif``). Both give the same chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from ..errors import ModelError

NEURON_TYPES = ("LIF", "CubaLIF", "IF", "LI", "I", "Threshold", "CubaLI")
WEIGHT_TYPES = ("Affine", "Linear")


@dataclass
class Link:
    """One node of the chain: its name, the NIR node and, for a neuron, its recurrent weight
    node (an ``Affine`` or ``Linear`` whose only input and only output is that neuron)."""

    name: str
    node: Any
    recurrent: Optional[Any] = None
    recurrent_name: str = ""

    @property
    def type(self) -> str:
        """The NIR node type (a node rewritten on import keeps its type in ``nir_type``)."""
        return getattr(self.node, "nir_type", None) or type(self.node).__name__


def read_graph(path: Union[str, Path]) -> Any:
    """``nir.read`` with its failures as one line naming the file."""
    try:
        import nir
    except ImportError:
        from ..errors import MissingExtraError

        raise MissingExtraError("reading NIR needs the peers extra: pip install 'spikeedge[peers]' (nir, h5py)") from None
    path = Path(path)
    if not path.is_file():
        raise ModelError("%s: no such file" % path)
    try:
        return nir.read(str(path), type_check=False)  # the importer checks every shape itself; Norse's files fail nir's check (a batch dimension)
    except Exception as exc:  # h5py and nir raise many kinds on a file that is not a NIR graph
        raise ModelError("%s: not a NIR graph (%s)" % (path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)) from None


def _flatten(nodes: Dict[str, Any], edges: List[Tuple[str, str]]) -> Tuple[Dict[str, Any], List[Tuple[str, str]]]:
    """Inline every nested graph: its input node's successors take the edges into it, its output
    node's predecessors the edges out of it."""
    nodes, edges = dict(nodes), list(edges)
    while True:
        nested = [k for k, v in nodes.items() if type(v).__name__ == "NIRGraph"]
        if not nested:
            return nodes, edges
        key = nested[0]
        graph = nodes.pop(key)
        sub_nodes, sub_edges = _flatten(dict(graph.nodes), [tuple(e) for e in graph.edges])
        ins = [k for k, v in sub_nodes.items() if type(v).__name__ == "Input"]
        outs = [k for k, v in sub_nodes.items() if type(v).__name__ == "Output"]
        if len(ins) != 1 or len(outs) != 1:
            raise ModelError("node %r: a nested graph needs one input and one output node" % key)
        first = [b for a, b in sub_edges if a == ins[0]]
        last = [a for a, b in sub_edges if b == outs[0]]
        inner = [(a, b) for a, b in sub_edges if a != ins[0] and b != outs[0]]
        for k, v in sub_nodes.items():
            if k not in (ins[0], outs[0]):
                nodes["%s.%s" % (key, k)] = v
        new: List[Tuple[str, str]] = [("%s.%s" % (key, a), "%s.%s" % (key, b)) for a, b in inner]
        for a, b in edges:
            if b == key:
                new += [(a, "%s.%s" % (key, f)) for f in first]
            elif a == key:
                new += [("%s.%s" % (key, x), b) for x in last]
            else:
                new.append((a, b))
        edges = new


def chain(graph: Any) -> List[Link]:
    """The graph as a chain input -> ... -> output (the ``Input`` and ``Output`` nodes left out),
    recurrent loops attached to their neurons. ``ModelError`` naming the node otherwise."""
    nodes, edges = _flatten(dict(graph.nodes), [tuple(e) for e in graph.edges])
    edges = list(dict.fromkeys(edges))  # a repeated edge is one connection
    succ: Dict[str, List[str]] = {k: [] for k in nodes}
    pred: Dict[str, List[str]] = {k: [] for k in nodes}
    for a, b in edges:
        if a not in nodes or b not in nodes:
            raise ModelError("edge %s -> %s names a node the graph does not have" % (a, b))
        succ[a].append(b)
        pred[b].append(a)
    loops: Dict[str, str] = {}
    for k, v in nodes.items():  # W with one input and one output, both the same neuron: a recurrent loop
        if type(v).__name__ in WEIGHT_TYPES and len(pred[k]) == 1 and succ[k] == pred[k]:
            n = pred[k][0]
            if type(nodes[n]).__name__ in NEURON_TYPES:
                if n in loops:
                    raise ModelError("node %r has two recurrent weight nodes (%s, %s)" % (n, loops[n], k))
                loops[n] = k
    for n, w in loops.items():
        succ[n].remove(w)
        pred[n].remove(w)
    inputs = [k for k, v in nodes.items() if type(v).__name__ == "Input"]
    if len(inputs) != 1:
        raise ModelError("the graph has %d input nodes; spikeedge imports graphs with one" % len(inputs))
    out: List[Link] = []
    here, seen = inputs[0], set()
    while True:
        seen.add(here)
        nxt = succ[here]
        if len(nxt) != 1:
            if not nxt and type(nodes[here]).__name__ == "Output":
                break
            raise ModelError("node %r feeds %d nodes (%s): spikeedge imports chains (with recurrent loops), not branches"
                             % (here, len(nxt), ", ".join(nxt) or "none, and it is no output"))
        here = nxt[0]
        if here in seen:
            raise ModelError("node %r closes a loop that is not a recurrent weight on a neuron" % here)
        if len(pred[here]) != 1:
            raise ModelError("node %r sums %d inputs (%s): spikeedge imports chains, not merges" % (here, len(pred[here]), ", ".join(pred[here])))
        if type(nodes[here]).__name__ == "Output":
            if succ[here]:
                raise ModelError("output node %r feeds other nodes" % here)
            break
        out.append(Link(here, nodes[here], nodes[loops[here]] if here in loops else None, loops.get(here, "")))
    unused = set(nodes) - seen - set(loops.values()) - {here}
    if unused:
        raise ModelError("node %r is not on the path from the input to the output" % sorted(unused)[0])
    return out


def input_shape(graph: Any) -> Tuple[int, ...]:
    """The shape of one input sample, from the graph's ``Input`` node."""
    for v in graph.nodes.values():
        if type(v).__name__ == "Input":
            shapes = list(v.input_type.values())
            if len(shapes) == 1 and np.size(shapes[0]) >= 1:
                return tuple(int(s) for s in np.asarray(shapes[0]).reshape(-1))
    raise ModelError("the input node does not give the input's shape")
