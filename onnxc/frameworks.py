"""Models from other frameworks: a ``torch.nn.Module`` becomes ONNX through ``torch.onnx.export``.

torch is an optional extra (``pip install 'onnxc[torch]'``): it is imported only when a caller
hands over a module, and ``is_torch_module`` never imports it (a module object can only exist
once torch has been imported). Keras models take the tf2onnx route, outside onnxc: see
docs/frameworks.md.

Two exporters exist in torch 2.13. The default one (``dynamo=True``, built on torch.export)
needs the ``onnxscript`` package and writes plain ops (an RNN is unrolled into MatMul/Add/Tanh);
the older TorchScript exporter needs nothing more, keeps RNN/LSTM/GRU as single ONNX ops, and
is deprecated by torch. ``exporter="auto"`` uses the first when onnxscript is installed and the
second otherwise; both give models onnxc compiles.
"""
from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
import logging
import sys
import warnings
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from onnxc.ir.errors import ModelError, OnnxcError

if TYPE_CHECKING:
    import onnx

log = logging.getLogger("onnxc.frameworks")

EXPORTERS = ("auto", "dynamo", "torchscript")


def is_torch_module(model: Any) -> bool:
    """True for a ``torch.nn.Module``; False for anything else, without importing torch."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def _as_tuple(example_inputs: Any) -> tuple:
    """Example inputs as a tuple of tensors; numpy arrays become tensors (sharing memory)."""
    import numpy as np
    import torch

    if example_inputs is None:
        raise OnnxcError("compiling a torch.nn.Module needs example_inputs: a tensor or a tuple "
                         "of tensors shaped like the real inputs, e.g. "
                         "onnxc.compile(module, example_inputs=(torch.randn(1, 784),))")
    items = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    return tuple(torch.from_numpy(x) if isinstance(x, np.ndarray) else x for x in items)


def _forward_names(module: Any, count: int) -> list[str]:
    """The first ``count`` parameter names of ``module.forward``: the ONNX inputs' names."""
    try:
        params = [p for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params[:count]]
    return names + [f"input_{k}" for k in range(len(names), count)]


def _choose(exporter: str) -> str:
    if exporter not in EXPORTERS:
        raise OnnxcError(f"unknown exporter {exporter!r}; choose one of {', '.join(EXPORTERS)}")
    if exporter != "auto":
        return exporter
    if importlib.util.find_spec("onnxscript") is not None:
        return "dynamo"
    log.info("onnxscript is not installed: exporting with torch's TorchScript exporter "
             "(pip install 'onnxc[torch]' brings onnxscript for the default exporter)")
    return "torchscript"


def torch_to_onnx(module: Any, example_inputs: Any, *, input_names: Sequence[str] | None = None,
                  output_names: Sequence[str] | None = None, exporter: str = "auto",
                  opset_version: int | None = None) -> "onnx.ModelProto":
    """``module`` as an ONNX model, traced on ``example_inputs`` (whose shapes it fixes).

    The module is exported in eval mode (BatchNorm statistics, no Dropout), as inference
    compilers need, and put back in the mode it was in. Input names default to ``forward``'s
    parameter names.
    """
    try:
        import torch
    except ImportError:
        raise OnnxcError("compiling a torch.nn.Module needs torch: pip install "
                         "'onnxc[torch]'") from None
    import onnx

    if not isinstance(module, torch.nn.Module):
        raise OnnxcError(f"expected a torch.nn.Module, got {type(module).__name__}")
    args = _as_tuple(example_inputs)
    kind = _choose(exporter)
    names = list(input_names) if input_names is not None else _forward_names(module, len(args))
    options: dict[str, Any] = {"input_names": names}
    if output_names is not None:
        options["output_names"] = list(output_names)
    if opset_version is not None:
        options["opset_version"] = opset_version
    was_training = module.training
    module.eval()
    noise = io.StringIO()  # the exporters print progress lines; keep them for the debug log
    try:
        with torch.no_grad(), contextlib.redirect_stdout(noise), warnings.catch_warnings():
            # nn.RNN's weights are re-assigned while tracing; torch warns, needlessly here.
            warnings.filterwarnings("ignore", message=".*were assigned during export")
            if kind == "dynamo":
                program = torch.onnx.export(module, args, dynamo=True, verbose=False, **options)
                proto = program.model_proto
            else:
                buffer = io.BytesIO()
                with _quiet_deprecation():
                    torch.onnx.export(module, args, buffer, dynamo=False, **options)
                proto = onnx.load_from_string(buffer.getvalue())
    except OnnxcError:
        raise
    except Exception as exc:  # torch raises many kinds; say which exporter and what to try
        first_line = next((line for line in str(exc).splitlines() if line.strip()), "")
        if kind == "dynamo":
            hint = ("try exporter='torchscript' (it traces only the path these example inputs "
                    "take, so check data-dependent branches)")
        else:
            hint = "try exporter='dynamo' (needs onnxscript)"
        raise ModelError(f"torch.onnx.export ({kind} exporter) failed on "
                         f"{type(module).__name__}: {type(exc).__name__}: {first_line}; "
                         f"{hint}, or export the model yourself and pass the .onnx file "
                         f"(the full error is chained below)") from exc
    finally:
        module.train(was_training)
    if noise.getvalue():
        log.debug("torch.onnx.export said:\n%s", noise.getvalue().rstrip())
    log.info("exported %s with torch's %s exporter: %d ONNX nodes, opset %s",
             type(module).__name__, kind, len(proto.graph.node),
             next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), "?"))
    return proto


@contextlib.contextmanager
def _quiet_deprecation() -> Iterator[None]:
    """The TorchScript exporter warns that it is deprecated; we chose it knowingly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield
