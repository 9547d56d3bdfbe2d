"""int8 inference on the CPU: ONNX export + ONNX Runtime's dynamic quantisation of the matrix products.

``precision="int8"`` (``predict_raster``, ``carl-geo predict --precision int8``, the QGIS algorithms)
runs the model through :class:`Int8Model`:

1. the module (``module(img (B, C, H, W), wavelengths (C,) µm) -> (B, K, H, W)``) is exported to
   ONNX with ``torch.onnx.export(dynamo=True)`` for one input shape;
2. ONNX Runtime's ``quantize_dynamic`` stores the weights of every matrix product with a constant
   operand (the ``nn.Linear`` layers, the patch embedding) as int8, one scale per output channel (7 bits on a
   CPU without VNNI, where 8-bit products saturate: :func:`needs_reduced_range`);
   activations are quantised per call (uint8, dynamic range), attention products, norms,
   convolutions and the rest stay float32;
3. an ONNX Runtime CPU session runs it with as many threads as torch uses.

Why ONNX Runtime (``benchmarks/bench_int8.py``, published config, 13 bands, 128 x 128, 2 cores):
3.1x carl_geo's float32 images/s at a feature cosine of 0.9994 to float32, the fastest option
measured; ``torch.ao`` dynamic int8 (deprecated) 1.9x at 0.998; torchao's
``Int8DynamicActivationInt8WeightConfig`` 0.44x in eager mode (it needs ``torch.compile``, minutes of
compilation on a laptop CPU, to be faster).

A :class:`~carl_geo.models.pixel_classifier.PixelClassifier` (the CARL ensemble polygon training keeps) runs its
CARL segmenter in int8 and its window context, forest / MLP heads and fusion in float32 torch
(:class:`Int8PixelClassifier`): the forest does not export to ONNX.

Accuracy cost: the kept ensembles of the NC and Sentinel-2 scenes agree with float32 on 99.2 % and 99.7 % of the
pixels (``benchmarks/results/bench_int8_ensembles.md``); first-design tiny models on ~98.5-99 % (the flips sit on
pixels whose two best classes are within ~0.01 in probability).

The optional packages are ``onnxruntime``, ``onnx`` and ``onnxscript`` (``pip install "carl-geo[int8]"``);
without them ``precision="int8"`` fails with one line that says so.

Export and quantisation take seconds (tiny model) to tens of seconds (published model) once per
input shape; sessions are kept per module and shape for the life of the module (weights changed in
place since are detected and trigger a new export).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import re
import tempfile
import time
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from carl_geo.devices import torch_cpu_check
from carl_geo.errors import CarlGeoError

#: Modules precision="int8" needs (import names).
INT8_MODULES = ("onnxruntime", "onnx", "onnxscript")
#: The pip command that installs them.
INT8_INSTALL = 'pip install "carl-geo[int8]"  (or: pip install onnxruntime onnx onnxscript)'
#: ONNX operator types whose constant (weight) operand is quantised to int8.
QUANTIZED_OPS = ("MatMul", "Gemm")
#: ONNX opset of the export.
OPSET = 18
#: Let ONNX Runtime's idle worker threads spin (busy-wait) between operators. Off: in the predictor
#: (1024^2, 2 cores) 14 % faster without spinning, and the reader / writer threads keep their cores.
SPIN = False
#: Terminal colour codes, removed from the exporter's messages before they reach an error message.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: Sub-modules (names as in ``module.named_modules()``, prefixes) whose matrix products stay float32.
KEEP_FLOAT: tuple[str, ...] = ()


def _float_nodes(path: Path, keep: Sequence[str]) -> list[str]:
    """Names of the ONNX nodes of ``path`` exported from the sub-modules ``keep`` (by name prefix),
    read from the exporter's ``pkg.torch.onnx.name_scopes`` node metadata."""
    if not keep:
        return []
    import ast

    import onnx

    nodes = []
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        try:
            scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
        except (ValueError, SyntaxError):
            continue
        names = [sc.removeprefix("module.") for sc in scopes if isinstance(sc, str) and sc.startswith("module.")]
        if any(n == k or n.startswith(k + ".") for n in names for k in keep):
            nodes.append(node.name)
    return nodes


class Int8Unavailable(CarlGeoError):
    """precision="int8" was asked for but a package it needs is missing (one-line message)."""


def missing_int8_modules() -> list[str]:
    """The modules of :data:`INT8_MODULES` that cannot be imported here."""
    missing = []
    for name in INT8_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def require_int8() -> None:
    """Raise :class:`Int8Unavailable` (one line: what is missing, the pip command) unless the int8
    packages are installed."""
    missing = missing_int8_modules()
    if missing:
        raise Int8Unavailable(f"precision 'int8' needs {', '.join(missing)} (not installed); "
                              f"run: {INT8_INSTALL}; or use precision 'fp32'")


def _fingerprint(module: nn.Module) -> tuple[Any, ...]:
    """Changes when a parameter or buffer of ``module`` is replaced or modified in place."""
    tensors = list(module.parameters()) + list(module.buffers())
    return tuple((t.data_ptr(), t._version, tuple(t.shape)) for t in tensors)


class _Export(nn.Module):
    """The wrapped module with a plain tensor output (ONNX needs one)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, img: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        out = self.module(img, wavelengths)
        if not isinstance(out, torch.Tensor):
            out = out[0]  # CARL's (spatial, spectral) output: the spatial features
        return out


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's progress lines and the quantiser's advice (logged on the root logger), and
    torch's own warnings and printouts while tracing (its loggers have their own handlers and levels; a
    model that cannot be exported printed its whole graph, ~1,000 lines, before the one-line error)."""
    loggers = [logging.getLogger()] + [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
                                       if name.split(".")[0] in ("torch", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def needs_reduced_range() -> bool:
    """Whether int8 weights get 7 bits (ONNX Runtime's ``reduce_range``): on a CPU without VNNI dot products.

    There ONNX Runtime multiplies uint8 activations by int8 weights with AVX2 / AVX-512 ``VPMADDUBSW``, whose 16-bit
    pair sums saturate: the published CARL's features fell to a cosine of 0.845 to fp32 on an AMD EPYC with AVX2
    (2026-12-06), 0.999 with 7-bit weights at 1.05x the time. CPUs with VNNI (AVX-512 VNNI, AVX-VNNI, AMX) keep
    8 bits (cosine 0.9994 on an Intel Xeon with AMX). When torch cannot tell, 7 bits: the safe side."""
    return torch_cpu_check("_is_vnni_supported") is not True


def quantize_options() -> dict[str, Any]:
    """The keyword arguments of ONNX Runtime's ``quantize_dynamic`` that set how ``precision="int8"`` stores and
    multiplies (per-channel int8 weights, 7 bits where :func:`needs_reduced_range`, products with a constant operand
    only); :func:`export_int8` adds which nodes it quantises. ``benchmarks/bench_gemm_ceiling.py`` quantises single
    products with the same options."""
    from onnxruntime.quantization import QuantType

    return {"weight_type": QuantType.QInt8, "per_channel": True, "reduce_range": needs_reduced_range(),
            "extra_options": {"MatMulConstBOnly": True}}


def export_int8(module: nn.Module, img: torch.Tensor, wavelengths: torch.Tensor, path: str | os.PathLike) -> Path:
    """Export ``module`` for inputs shaped like ``img`` (B, C, H, W) and ``wavelengths`` (C,) and write
    its int8-quantised ONNX model to ``path``.

    Raises:
        Int8Unavailable: the int8 packages are missing.
        ValueError: the module cannot be exported to ONNX.
    """
    require_int8()
    from onnxruntime.quantization import quantize_dynamic

    path = Path(path)
    wrapped = _Export(module).eval()
    with tempfile.TemporaryDirectory(prefix="carl_int8_") as tmp:
        fp32 = Path(tmp) / "model.onnx"
        try:
            with _quiet(), torch.inference_mode(False), torch.no_grad():
                example = (img.detach().float().cpu().clone(), wavelengths.detach().float().cpu().clone())
                torch.onnx.export(wrapped, example, str(fp32),
                                  input_names=["img", "wavelengths"], output_names=["out"], dynamo=True,
                                  opset_version=OPSET, external_data=True, verbose=False)
        except Exception as e:  # noqa: BLE001 - any exporter failure means: this model cannot run in int8
            text = ANSI_ESCAPE.sub("", str(e)).strip()  # the exporter colours its messages for terminals
            first = text.splitlines()[0] if text else type(e).__name__
            raise CarlGeoError(f"precision 'int8' could not convert this model to ONNX ({first}); "
                             "use precision 'fp32'") from e
        with _quiet():
            quantize_dynamic(str(fp32), str(path), op_types_to_quantize=list(QUANTIZED_OPS),
                             nodes_to_exclude=_float_nodes(fp32, KEEP_FLOAT), **quantize_options())
    return path


class Int8Model:
    """``model(img, wavelengths) -> tensor``: ``module`` run in int8 by ONNX Runtime on the CPU.

    One session per input shape, built on the first call with that shape (see the module
    docstring). Inputs: ``img`` (B, C, H, W) float32 and ``wavelengths`` (C,) µm (CPU tensors);
    output: float32 CPU tensor, the module's output shape (B, K, H, W).

    Args:
        module: the float32 module (not modified).
        threads: ONNX Runtime intra-op threads (default: ``torch.get_num_threads()`` at each
            session's creation).
    """

    def __init__(self, module: nn.Module, threads: int | None = None) -> None:
        require_int8()
        self.module = module
        self.threads = threads
        self._sessions: dict[tuple[Any, ...], Any] = {}
        self._fingerprint = _fingerprint(module)
        self.export_seconds = 0.0

    def session(self, img: torch.Tensor, wavelengths: torch.Tensor) -> Any:
        """The ONNX Runtime session for ``img``'s shape (built if needed)."""
        import onnxruntime as ort

        fp = _fingerprint(self.module)
        if fp != self._fingerprint:  # weights changed since the sessions were built
            self._sessions.clear()
            self._fingerprint = fp
        key = (tuple(img.shape), tuple(wavelengths.shape))
        sess = self._sessions.get(key)
        if sess is None:
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="carl_int8_") as tmp:
                path = export_int8(self.module, img, wavelengths, Path(tmp) / "model.int8.onnx")
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = int(self.threads or torch.get_num_threads())
                opts.inter_op_num_threads = 1
                opts.log_severity_level = 3
                if not SPIN:  # idle workers sleep: the reader / writer threads keep their cores
                    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            self._sessions[key] = sess
            self.export_seconds += time.perf_counter() - t0
        return sess

    def __call__(self, img: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        if img.device.type != "cpu":
            raise CarlGeoError("precision 'int8' runs on the CPU; use device 'cpu'")
        x = np.ascontiguousarray(img.detach().float().numpy())
        wl = np.ascontiguousarray(wavelengths.detach().float().cpu().numpy())
        out = self.session(img, wavelengths).run(None, {"img": x, "wavelengths": wl})[0]
        return torch.from_numpy(out)


class Int8PixelClassifier:
    """``model(img, wavelengths) -> tensor`` for a :class:`~carl_geo.models.pixel_classifier.PixelClassifier` (the
    model polygon training keeps): its CARL segmenter runs in int8 (:class:`Int8Model`), the rest (window context,
    the forest and MLP heads, the band-agnostic path, the fusion) in float32 torch, as without int8. The forest
    walks its trees with data-dependent shapes, which the ONNX export cannot take; its cost is small next to the
    backbone's.

    Inputs and output as :class:`Int8Model`'s; the output holds the fused log-probabilities (B, K, H, W).
    """

    def __init__(self, module: nn.Module, threads: int | None = None) -> None:
        self.module = module
        self.carl = Int8Model(module.carl, threads=threads)

    @property
    def export_seconds(self) -> float:
        """Seconds spent exporting and quantising the CARL segmenter so far."""
        return self.carl.export_seconds

    def __call__(self, img: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        from carl_geo.models.carl import check_inputs

        wl = check_inputs(img, wavelengths)
        return self.module.fuse(img, wl, self.carl(img, wavelengths))


_MODELS: "weakref.WeakKeyDictionary[nn.Module, Int8Model | Int8PixelClassifier]" = weakref.WeakKeyDictionary()


def int8_model(module: nn.Module) -> Int8Model | Int8PixelClassifier:
    """The int8 runner of ``module`` (:class:`Int8PixelClassifier` for a model with pixel heads, else
    :class:`Int8Model`), shared by every run on the same module object (so a second prediction with the same
    model skips the export)."""
    from carl_geo.models.pixel_classifier import PixelClassifier

    model = _MODELS.get(module)
    if model is None:
        check_exportable(module)
        model = Int8PixelClassifier(module) if isinstance(module, PixelClassifier) else Int8Model(module)
        _MODELS[module] = model
    return model


def check_exportable(module: nn.Module) -> None:
    """Raise :class:`~carl_geo.errors.CarlGeoError` (one line, before any pixel is read) for modules the ONNX
    export cannot take: a forest (:class:`~carl_geo.models.tree_ensemble.TreeEnsemble`) walks its trees with
    data-dependent shapes. The forest heads of a
    :class:`~carl_geo.models.pixel_classifier.PixelClassifier` are fine: only its CARL segmenter is exported."""
    from carl_geo.models.pixel_classifier import PixelClassifier
    from carl_geo.models.tree_ensemble import TreeEnsemble

    exported = module.carl if isinstance(module, PixelClassifier) else module
    if any(isinstance(m, TreeEnsemble) for m in exported.modules()):
        raise CarlGeoError("precision 'int8' cannot run this model: it holds a forest outside the pixel heads, which "
                           "the ONNX export does not support; use precision 'fp32'")
