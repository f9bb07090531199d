"""PyTorch -> ONNX export shared by the authored models."""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch

OPSET = 17


def onnx_from_module(
    module: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    input_names: tuple[str, ...],
    output_names: tuple[str, ...],
    dynamic_axes: dict[str, dict[int, str]],
    path: Path,
    opset: int = OPSET,
) -> onnx.ModelProto:
    """Export with named inputs/outputs and dynamic axes, then check the graph.

    The TorchScript exporter is used on purpose: it needs no onnxscript and traces the
    shape arithmetic of the faces-per-request dimension into the graph.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation and tracer chatter
        torch.onnx.export(
            module.eval(),
            example,
            str(path),
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            dynamo=False,
            do_constant_folding=True,
        )
    model = onnx.load(path)
    onnx.checker.check_model(model)
    return model


def batch_and_faces_axes(names: tuple[str, ...]) -> dict[str, dict[int, str]]:
    return {name: {0: "batch", 1: "faces"} for name in names}
