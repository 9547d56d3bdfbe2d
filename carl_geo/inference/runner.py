"""Run a model on batches of tiles: device choice, autocast precision, output activation.

A :class:`ModelRunner` turns a (B, C, h, w) float32 batch into (B, K, h, w) float32 predictions on
the device: class probabilities (softmax over K) for ``"classes"``/``"probabilities"``, features
for ``"embeddings"``. :func:`auto_batch_size` sizes batches to the device.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from carl_geo.devices import resolve_device  # noqa: F401  (re-exported: its home is carl_geo.devices)
from carl_geo.devices import torch_cpu_check
from carl_geo.errors import CarlGeoError, ModelTaskError, check_choice, option
from carl_geo.inference.outputs import output_kind
from carl_geo.models.bundle import ModelBundle, load_bundle
from carl_geo.class_colors import class_colors
from carl_geo.models.pixel_classifier import is_segmentation_module
from carl_geo.models.carl import CARL
from carl_geo.models.segmentation import CARLEmbedder

#: Autocast dtype per precision (keys: :data:`carl_geo.inference.settings.PRECISIONS`); ``"int8"`` runs in
#: ONNX Runtime (:mod:`carl_geo.inference.int8`), no autocast; ``"auto"`` is resolved first (:func:`resolve_precision`).
PRECISIONS = {"fp32": None, "int8": None, "bf16": torch.bfloat16, "fp16": torch.float16, "auto": None}


def resolve_precision(precision: str, device: torch.device, module: nn.Module | None = None) -> str:
    """The precision a run uses: ``"auto"`` is ``"bf16"`` for a CARL model (``module`` holds a
    :class:`~carl_geo.models.carl.CARL`) on a CPU with AMX matrix units, and ``"fp32"`` elsewhere (GPUs, other CPUs,
    other modules: bf16 was measured on CARL models only); any other value is returned as it is.

    Why (``benchmarks/results/bench_int8_bf16*.md``, ``bench_int8_ensembles_bf16.md``, 2 cores with AMX): the
    published backbone runs 2.2-2.5x faster in bf16 than in fp32 (3.0-3.2x upstream's fp32), its features keep a cosine of
    0.99997, and the class maps of the models polygon training keeps agree with fp32 on 99.52 % (NC Landsat 7) and
    99.39 % (Sentinel-2) of the pixels with the same held-out mIoU; without AMX, bf16 runs slower than fp32."""
    if precision != "auto":
        return precision
    carl = module is not None and any(isinstance(m, CARL) for m in module.modules())
    return "bf16" if carl and device.type == "cpu" and cpu_has_amx() else "fp32"


def check_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``"fp32"`` (None), ``"bf16"``, ``"fp16"`` (GPU only), ``"int8"`` (None; CPU
    only, needs the optional int8 packages: checked here, before any pixel is read)."""
    check_choice("precision", precision, PRECISIONS)
    if precision == "fp16" and device.type == "cpu":
        raise CarlGeoError("precision 'fp16' needs a GPU; on CPU use 'int8', 'bf16' or 'fp32'")
    if precision == "int8":
        if device.type != "cpu":
            raise CarlGeoError(f"precision 'int8' runs on the CPU; use device 'cpu' (or bf16/fp16 on {device.type})")
        from carl_geo.inference.int8 import require_int8

        require_int8()
    return PRECISIONS[precision]


def inference_device(device: str | torch.device, precision: str) -> torch.device:
    """The device a prediction runs on, its precision checked (:func:`check_precision`): ``device`` resolved
    (:func:`~carl_geo.devices.resolve_device`), except that ``"auto"`` with ``precision="int8"`` is the CPU
    (int8 runs in ONNX Runtime on the CPU only)."""
    dev = resolve_device("cpu" if precision == "int8" and str(device) == "auto" else device)
    check_precision(precision, dev)
    if precision == "bf16" and dev.type == "cpu" and not cpu_has_bf16_units():
        import warnings

        from carl_geo.errors import CarlGeoWarning

        warnings.warn("precision 'bf16' on this CPU (no AMX or AVX-512 BF16 units) runs slower than fp32; "
                      f"use {option('precision', 'int8', repr('int8'))} or fp32 here", CarlGeoWarning, stacklevel=3)
    return dev


def cpu_has_amx() -> bool:
    """Whether this CPU has Intel AMX tiles (bf16 / int8 matrix units; Xeon 4th generation on) and the operating
    system lets this process use them (Linux >= 5.16 grants them on request; without that grant bf16 is emulated).
    False when torch cannot tell (then "auto" stays fp32)."""
    return bool(torch_cpu_check("_is_amx_tile_supported")) and bool(torch_cpu_check("_init_amx"))


def cpu_has_bf16_units() -> bool:
    """Whether this CPU multiplies bf16 in hardware: Intel AMX (Xeon 4th generation on; measured there, the published
    CARL runs 2.2-2.5x faster in bf16 than in fp32, ``benchmarks/results/bench_int8_bf16.md``) or AVX-512 BF16
    (dot-product instructions only, not measured). Without either, bf16 is emulated and slower than fp32."""
    answers = [torch_cpu_check(name) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(answers) or all(a is None for a in answers)  # torch cannot tell: do not warn


@dataclass
class ModelSpec:
    """What the predictor needs to know about a model.

    Attributes:
        module: called as ``module(img (B, C, H, W), wavelengths (C,) µm) -> (B, K, H, W)``.
        num_outputs: K (classes or feature channels), or None until the model has run once.
        class_names, colors: per class (classes/probabilities outputs).
        bundle: the :class:`ModelBundle` when one was given.
    """

    module: nn.Module
    num_outputs: int | None
    class_names: list[str] = field(default_factory=list)
    colors: list[tuple[int, int, int]] = field(default_factory=list)
    bundle: ModelBundle | None = None


def model_spec(model: Any, output: str, class_names: Sequence[str] | None = None,
               colors: Sequence[Sequence[int]] | None = None) -> ModelSpec:
    """Adapt a :class:`ModelBundle`, a model file's path (loaded with :func:`~carl_geo.models.load_bundle`) or
    a bare ``nn.Module`` to ``output``.

    A segmentation bundle asked for ``"embeddings"`` yields its backbone's per-pixel features.

    Raises:
        ValueError: a feature model asked for classes, or wrong class name / colour counts.
    """
    kind = output_kind(output)
    if isinstance(model, (str, os.PathLike)):  # a model file, as the command line's --model takes it
        model = load_bundle(model)
    bundle = model if isinstance(model, ModelBundle) else None
    module = bundle.model if bundle is not None else model
    if not isinstance(module, nn.Module):
        raise CarlGeoError(f"model must be a ModelBundle or a torch nn.Module, got {type(model).__name__}")
    k: int | None = None
    if not kind.needs_classes:  # the model's features
        if is_segmentation_module(module):
            module = CARLEmbedder(module.backbone)
        if isinstance(module, CARLEmbedder):
            k = module.out_channels
        return ModelSpec(module, k, [], [], bundle)
    if bundle is not None and bundle.task != "segmentation":
        raise ModelTaskError(f"this model is a feature extractor (no classes) and cannot produce {output!r}; "
                             f"use {option('output', 'embeddings', repr('embeddings'))} or a segmentation model file")
    if is_segmentation_module(module):
        k = module.num_classes
    names = list(class_names) if class_names else list(bundle.class_names if bundle else [])
    cols = [tuple(int(v) for v in c) for c in colors] if colors else \
        [tuple(c) for c in (bundle.colors if bundle else [])]
    spec = ModelSpec(module, k, names, cols, bundle)  # type: ignore[arg-type]
    if k is not None:
        finish_spec(spec, k)
    return spec


def has_model_bands(bundle: Any, wavelengths: Sequence[float]) -> bool:
    """Whether the input's bands (µm) are those the bundle's model was trained on, in order (then even small drifts
    of the input's values from the model's statistics are worth a warning)."""
    from carl_geo.models.band_matching import match_bands

    mine = getattr(bundle, "wavelengths", None)
    return mine is not None and match_bands(mine, list(wavelengths)) == list(range(len(mine)))


def warn_assumed_bands(wavelengths: Sequence[float], band_names: Sequence[str] | None = None) -> None:
    """Warn (one line, :class:`~carl_geo.errors.CarlGeoWarning`) that the input's bands carry no wavelengths and are
    read as the model's training bands (``wavelengths`` µm, ``band_names``) in their order: right for the model's
    own camera, wrong for another one with as many bands, which nothing else would reveal."""
    import warnings

    from carl_geo.errors import CarlGeoWarning

    bands = ", ".join(f"{n} {w:g}" if n else f"{w:g}" for n, w in zip(band_names or [""] * len(wavelengths),
                                                                      wavelengths))
    warnings.warn(f"the input's bands carry no wavelengths: read as the model's {len(wavelengths)} training bands in "
                  f"their order ({bands} µm); if it comes from another camera or has another band order, give "
                  f"{option('sensor', 'NAME', repr('NAME'))} or {option('wavelengths', 'UM,UM,...', '[...]')}",
                  CarlGeoWarning, stacklevel=3)


def warn_band_path(module: nn.Module, wavelengths: Sequence[float]) -> bool:
    """Warn (one line, :class:`~carl_geo.errors.CarlGeoWarning`) when a polygon-trained model's pixel heads cannot
    read these bands: the map then comes from its band-agnostic path (heads fitted here on its stored training
    pixels, interpolated to these wavelengths; fitted now, so the line says how long it took) or from its
    camera-agnostic CARL part alone; returns whether it warned."""
    from carl_geo.models.pixel_classifier import PixelClassifier

    if not isinstance(module, PixelClassifier):
        return False
    path = module.band_path(wavelengths)
    if path == "heads":
        return False
    import warnings

    from carl_geo.errors import CarlGeoWarning
    from carl_geo.models.band_matching import CONTIGUOUS_GAP_UM

    given = (f"the bands given ({_band_list(wavelengths)} µm) are not the model's training bands "
             f"({_band_list(module.wavelengths.tolist())} µm)")
    adapter = None if path == "resampled" else module.adapter(wavelengths)
    if path == "resampled":
        msg = (f"{given}: its pixel heads read the training bands taken from them (interpolated between given bands "
               f"at most {CONTIGUOUS_GAP_UM * 1000:g} nm apart where the centres differ); give the training bands for "
               "the model as trained")
    elif adapter is not None:
        heads = " and ".join(("an " if name == "MLP" else "a ") + name for name in adapter.head_names)
        msg = (f"{given}: mapping with its CARL part and {heads} fitted on these wavelengths from the "
               f"{adapter.n_pixels:,} labelled training pixels the model carries ({adapter.seconds:.0f} s); "
               "give the training bands for the full model")
    else:
        why = ("some lie outside the range of its stored training pixels" if module.bank is not None
               else "the model carries no training pixels")
        msg = (f"{given} and {why}: mapping with its camera-agnostic CARL part alone, without the pixel heads; "
               "give the training bands for the full model")
    warnings.warn(msg, CarlGeoWarning, stacklevel=3)
    return True


def _band_list(wavelengths: Sequence[float]) -> str:
    """``"3: 0.49, 0.56, 0.665"``, or ``"200: 0.4-2.45"`` for more than 16 bands (µm)."""
    wl = [float(w) for w in wavelengths]
    if len(wl) > 16:
        return f"{len(wl)}: {min(wl):g}-{max(wl):g}"
    return f"{len(wl)}: " + ", ".join(f"{w:g}" for w in wl)


def finish_spec(spec: ModelSpec, k: int) -> None:
    """Set K (known after the model ran once) and default/check class names and colours."""
    spec.num_outputs = k
    if spec.class_names and len(spec.class_names) != k:
        raise CarlGeoError(f"{len(spec.class_names)} class names were given for a model with {k} outputs")
    if spec.colors and len(spec.colors) != k:
        raise CarlGeoError(f"{len(spec.colors)} colours were given for a model with {k} outputs")


def class_defaults(spec: ModelSpec) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Class names and colours, filled with ``class i`` and :func:`~carl_geo.class_colors.class_colors`
    (land-cover colours for names that say what they are, matplotlib colours for the rest) when missing."""
    k = int(spec.num_outputs or 0)
    names = spec.class_names or [f"class {i}" for i in range(k)]
    cols = spec.colors or class_colors(names)
    return list(names), [tuple(int(v) for v in c) for c in cols]  # type: ignore[misc]


class ModelRunner:
    """Batches of tiles in, predictions out, under ``torch.inference_mode`` and autocast.

    Use as a context manager: on entry the module goes to ``device`` in eval mode; on exit it
    returns to its original device and training flag.

    On CUDA, a batch in pinned host memory is copied on a side stream (``non_blocking``), so the
    copy of batch n + 1 overlaps the model working on batch n; predictions stay on the device
    (the caller blends them there), so nothing waits for the GPU until finished rows are copied
    back.

    Args:
        module: ``module(img (B, C, H, W), wavelengths (C,)) -> (B, K, H, W)``.
        wavelengths: (C,) µm.
        output: a kind of :data:`~carl_geo.inference.outputs.OUTPUT_KINDS`; those with classes apply a softmax over K.
        device: a resolved torch device.
        precision: ``"auto"`` (:func:`resolve_precision`), ``"fp32"``, ``"bf16"``, ``"fp16"`` (autocast; as a
            context manager the runner works on a copy with its linear weights cast once,
            :func:`linear_weights_cast`) or ``"int8"`` (CPU: ONNX Runtime with int8 weights,
            :mod:`carl_geo.inference.int8`; one export per input shape, so as with ``compile`` a last, smaller
            batch is padded; ``eager`` calls run in float32).
        compile: ``torch.compile`` the module (static shapes: a last, smaller batch is padded to
            the batch size the model first saw, so there is one graph per run).
    """

    def __init__(self, module: nn.Module, wavelengths: Sequence[float], *, output: str,
                 device: torch.device, precision: str = "fp32", compile: bool = False) -> None:
        self.module = module
        self.output = output
        self.device = device
        precision = resolve_precision(precision, device, module)
        self.precision = precision
        self.autocast_dtype = check_precision(precision, device)
        self.compile = compile
        self.int8: Any = None
        if precision == "int8":
            from carl_geo.inference.int8 import int8_model

            self.int8 = int8_model(module)
        self.wavelengths = torch.tensor([float(w) for w in wavelengths], dtype=torch.float32, device=device)
        self._restore: tuple[torch.device | None, bool] | None = None
        self._forward: Any = module
        self._eager: nn.Module = module  # module, or its copy with low-precision linear weights (__enter__)
        self._compiled_batch: int | None = None
        self._copy_stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._pending: list[tuple[Any, Callable[[], None]]] = []  # (copy event, release) per batch

    def __enter__(self) -> "ModelRunner":
        first = next(iter(self.module.parameters()), None)
        self._restore = (first.device if first is not None else None, self.module.training)
        self.module.to(self.device).eval()
        self._eager = self.module
        if self.autocast_dtype is not None:
            self._eager = linear_weights_cast(self.module, self.autocast_dtype)
        if self.compile:
            self._forward = torch.compile(self._eager, dynamic=False)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.synchronize()
        if self._restore is not None:
            dev, training = self._restore
            if dev is not None and dev != self.device:
                self.module.to(dev)
            self.module.train(training)
            self._restore = None
        self._forward = self._eager = self.module

    def _to_device(self, x: torch.Tensor, release: Callable[[], None] | None) -> torch.Tensor:
        """Host batch -> device; ``release`` runs once the host memory may be reused."""
        if self._copy_stream is None:
            out = x.to(self.device)
            if release is not None and out.data_ptr() != x.data_ptr():
                release()
                release = None
            if release is not None:  # same memory (CPU): free it after the model has run
                self._pending.append((None, release))
            return out
        with torch.cuda.stream(self._copy_stream):
            out = x.to(self.device, non_blocking=x.is_pinned())
            event = torch.cuda.Event()
            event.record(self._copy_stream)
        torch.cuda.current_stream(self.device).wait_event(event)
        out.record_stream(torch.cuda.current_stream(self.device))
        if release is not None:
            self._pending.append((event, release))
        return out

    def _release_done(self, wait: bool = False) -> None:
        keep = []
        for event, release in self._pending:
            if event is None or wait or event.query():
                if event is not None and wait:
                    event.synchronize()
                release()
            else:
                keep.append((event, release))
        self._pending = keep

    def synchronize(self) -> None:
        """Wait for every queued copy and hand the host buffers back."""
        self._release_done(wait=True)

    def predict(self, batch: np.ndarray | torch.Tensor, release: Callable[[], None] | None = None,
                eager: bool = False) -> torch.Tensor:
        """(B, C, h, w) float32 (numpy, or a host tensor, ideally pinned) -> (B, K, h, w) float32
        probabilities or features **on the device**. ``release()`` is called when the host batch
        may be overwritten (at once on CPU after the model ran; after the copy on CUDA).
        ``eager``: skip the compiled model (probe calls whose shapes the run never uses again)."""
        x = torch.from_numpy(np.ascontiguousarray(batch)) if isinstance(batch, np.ndarray) else batch
        n = x.shape[0]
        x = self._to_device(x, release)
        compiled = self.compile and not eager
        int8 = self.int8 is not None and not eager
        if compiled or int8:
            if self._compiled_batch is None:
                self._compiled_batch = n
            if n < self._compiled_batch:  # keep the compiled static shape
                x = torch.cat([x, x.new_zeros((self._compiled_batch - n, *x.shape[1:]))])
        with torch.inference_mode(), torch.autocast(device_type=self.device.type,
                                                    dtype=self.autocast_dtype or torch.float32,
                                                    enabled=self.autocast_dtype is not None):
            forward = self.int8 if int8 else self._forward if compiled else self._eager
            out = forward(x, self.wavelengths)
        if not isinstance(out, torch.Tensor) or out.ndim != 4 or out.shape[0] != x.shape[0] \
                or tuple(out.shape[-2:]) != tuple(x.shape[-2:]):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise CarlGeoError(f"the model must return (B, K, H, W) = ({x.shape[0]}, K, {x.shape[2]}, {x.shape[3]}) "
                               f"for an input of shape {tuple(x.shape)}, got {got}")
        out = out[:n].float()
        if output_kind(self.output).needs_classes:
            out = torch.softmax(out, dim=1)
        self._release_done()
        return out

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(B, C, h, w) float32 -> (B, K, h, w) float32 numpy (probabilities or features), eager."""
        return self.predict(batch, eager=True).cpu().numpy()


def linear_weights_cast(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy of ``module`` whose ``nn.Linear`` weights and biases are stored in ``dtype`` (bf16 / fp16).

    Under autocast every linear layer casts its float32 weight to ``dtype`` on each call; with the weights cast
    once the outputs are the same (the same rounding) and the copies are gone: the published CARL in bf16 on a
    CPU with AMX runs 1.1-1.2x faster this way (``benchmarks/bench_int8.py``). ``module`` itself is left as it
    is (it may be shared with float32 callers). Returns ``module`` when there is nothing to cast or it cannot
    be copied."""
    def fp32_linears(root: nn.Module) -> list[nn.Module]:
        return [m for m in root.modules() if isinstance(m, nn.Linear) and m.weight.dtype == torch.float32]

    if not fp32_linears(module):
        return module
    try:
        low = copy.deepcopy(module)
    except Exception:  # a module that holds something uncopyable: autocast alone still gives the same numbers
        return module
    for m in fp32_linears(low):
        m.to(dtype)
    return low.eval()


def auto_batch_size(runner: ModelRunner, bands: int, tile_h: int, tile_w: int, *, cpu_default: int = 4,
                    memory_fraction: float = 0.5, limit: int = 256) -> int:
    """Tiles per model call sized to the device.

    CPU/MPS: ``cpu_default`` (larger batches do not run faster there). CUDA: two probe calls (1 and
    2 tiles) measure the peak memory one more tile costs; the batch uses ``memory_fraction`` of the
    free memory, rounded down to a power of two, at most ``limit``.
    """
    if runner.device.type != "cuda":
        return cpu_default
    peaks = []
    for b in (1, 2):
        torch.cuda.synchronize(runner.device)
        torch.cuda.reset_peak_memory_stats(runner.device)
        base = torch.cuda.memory_allocated(runner.device)
        runner.predict(np.zeros((b, bands, tile_h, tile_w), np.float32), eager=True)
        torch.cuda.synchronize(runner.device)
        peaks.append(torch.cuda.max_memory_allocated(runner.device) - base)
    per_tile = max(peaks[1] - peaks[0], 1)
    free, _ = torch.cuda.mem_get_info(runner.device)
    n = int(memory_fraction * free // per_tile)
    return max(1, min(limit, 1 << max(0, n.bit_length() - 1)))
