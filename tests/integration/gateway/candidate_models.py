"""Changed `fuse` programs for the version tests, made from the built one with the onnx API.

- `darker_fuse`: the real program with the fused face 12 levels darker: a change
  that passes the gates and that any poster shows.
- `template_returning_fuse`: returns the template face unchanged (a broken model that
  runs fine and keeps the tensor contract): the golden-set gate must stop it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUTPUT = "fused_faces"


def _rename_output(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.output[:] = [new if o == old else o for o in node.output]
        node.input[:] = [new if i == old else i for i in node.input]


def darker_fuse(built: Path, out: Path, levels: float = -12.0) -> Path:
    # Darker: enough to tell its posters apart. (Brighter, skin near white on
    # a bright template tripped postprocess's check as a blown highlight.)
    model = onnx.load(str(built))
    graph = model.graph
    _rename_output(graph, OUTPUT, "fused_faces_base")
    graph.initializer.extend([
        numpy_helper.from_array(np.array(levels, np.float32), "shift_levels"),
        numpy_helper.from_array(np.array(0.0, np.float32), "shift_low"),
        numpy_helper.from_array(np.array(255.0, np.float32), "shift_high"),
    ])
    graph.node.extend([
        helper.make_node("Cast", ["fused_faces_base"], ["shift_float"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["shift_float", "shift_levels"], ["shift_sum"]),
        helper.make_node("Clip", ["shift_sum", "shift_low", "shift_high"], ["shift_clipped"]),
        helper.make_node("Cast", ["shift_clipped"], [OUTPUT], to=TensorProto.UINT8),
    ])
    onnx.save(model, str(out))
    return out


def template_returning_fuse(built: Path, out: Path) -> Path:
    model = onnx.load(str(built))
    graph = model.graph
    _rename_output(graph, OUTPUT, "fused_faces_unused")
    graph.node.append(helper.make_node("Identity", ["template_faces"], [OUTPUT]))
    onnx.save(model, str(out))
    return out


def shifted_landmarks(built: Path, out: Path, shift_px: float = 4.0) -> Path:
    """The real mesh model with every point moved shift_px to the right."""
    model = onnx.load(str(built))
    graph = model.graph
    _rename_output(graph, "face_meshes", "face_meshes_base")
    graph.initializer.append(numpy_helper.from_array(np.array([shift_px, 0.0, 0.0], np.float32), "mesh_shift"))
    graph.node.append(helper.make_node("Add", ["face_meshes_base", "mesh_shift"], ["face_meshes"]))
    onnx.save(model, str(out))
    return out
