"""Streaming tiled inference: strips of rows in, blended rows out.

The engine walks the :class:`~carl_geo.inference.tiling.TileGrid` one tile row at a time:

1. :func:`iter_batches` reads the raster rows of one tile row (``read_rows(r0, r1, out)``) into a
   reused strip buffer, reflect-pads it in place and cuts it into normalised tiles, grouped in
   batches of ``batch_size``;
2. :class:`Prefetcher` runs that reading in a background thread with a bounded queue, so reading
   the next batch overlaps with the model working on the current one; batches are filled into
   recycled host buffers (:class:`BufferPool`, page-locked for CUDA so copies run asynchronously);
3. :class:`BlendAccumulator` adds ``window * prediction`` and ``window`` for the current tile row
   only (a buffer of ``tile_h`` rows x raster width, on the model's device) and hands every row that
   no later tile touches to ``emit(row0, blended (K, h, W) tensor, valid (h, W) numpy)``;
4. :class:`BackgroundWriter` runs the caller's row writer in another thread, so encoding and
   compressing the output overlaps with the model too.

Peak memory therefore depends on tile size, overlap, batch size, band/output counts and raster
width, never on raster height.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from carl_geo.errors import Cancelled
from carl_geo.inference.normalization import normalize_
from carl_geo.inference.tiling import TileGrid, reflect_fill

#: ``read_rows(r0, r1, out) -> valid``: write raster rows ``r0 .. r1`` (raw values) into the
#: (C, r1 - r0, W) view ``out`` and return their (r1 - r0, W) bool valid mask.
RowReader = Callable[[int, int, np.ndarray], np.ndarray]
#: ``emit(row0, blended (K, h, W) float32 tensor on the model's device, valid (h, W) bool numpy)``;
#: rows arrive in order, each once.
RowEmitter = Callable[[int, torch.Tensor, np.ndarray], None]
#: ``predict(tiles (b, C, th, tw) float32 host tensor, release) -> (b, K, th, tw) float32 tensor``;
#: ``release()`` must be called once the host tiles may be overwritten.
Predict = Callable[[torch.Tensor, Callable[[], None]], torch.Tensor]
#: ``progress(done_tiles, total_tiles) -> bool | None``; False cancels.
Progress = Callable[[int, int], Any]


#: Rows handed to ``emit`` at a time.
EMIT_ROWS = 64


#: The progress callback returned False; no output file was left behind (carl_geo's one
#: :class:`~carl_geo.errors.Cancelled`).
PredictionCancelled = Cancelled


class BufferPool:
    """Recycled (batch, C, tile_h, tile_w) float32 host tensors for batches of tiles.

    :meth:`get` hands out a free buffer (or allocates one), :meth:`put` takes it back; thread-safe.
    The number of buffers stays bounded by how many batches are in flight (reader, queue, model).

    Args:
        shape: buffer shape.
        pin: page-locked memory (for asynchronous host-to-device copies to a CUDA GPU).
    """

    def __init__(self, shape: tuple[int, ...], pin: bool = False) -> None:
        self.shape, self.pin = tuple(shape), pin
        self._free: list[torch.Tensor] = []
        self._lock = threading.Lock()
        self.allocated = 0

    def get(self) -> torch.Tensor:
        with self._lock:
            if self._free:
                return self._free.pop()
            self.allocated += 1
        return torch.empty(self.shape, dtype=torch.float32, pin_memory=self.pin)

    def put(self, buf: torch.Tensor) -> None:
        with self._lock:
            self._free.append(buf)


@dataclass
class Batch:
    """Tiles for one model call.

    Attributes:
        tiles: (b, C, tile_h, tile_w) float32 host tensor (a view of a pooled buffer).
        keys: (tile row, tile column) index of each tile.
        strips: valid mask (r1 - r0, W) of each tile row whose first tile is in this batch.
        release: hands the buffer back to its pool once the tiles have been used.
    """

    tiles: torch.Tensor
    keys: list[tuple[int, int]]
    strips: dict[int, np.ndarray] = field(default_factory=dict)
    release: Callable[[], None] = lambda: None


def iter_batches(grid: TileGrid, read_rows: RowReader, batch_size: int, *, bands: int, dtype: Any,
                 mean: float | None, std: float | None, pool: BufferPool | None = None) -> Iterator[Batch]:
    """Batches of normalised tiles in row-major order; reads each tile row's raster rows once.

    The raw strip (``bands`` x ``tile_h`` x padded width, in the raster's ``dtype``) and its valid mask
    are reflect-padded in place in buffers reused for every tile row; tiles are converted to float32,
    normalised with ``(x - mean) / (std + 1e-6)`` (``mean=None``: the rows are normalised already) and
    nodata set to 0 as they are copied into the batch buffer, taken from ``pool`` (default: a new
    unpinned pool).
    """
    if pool is None:
        pool = BufferPool((batch_size, bands, grid.tile_h, grid.tile_w))
    if pool.shape != (batch_size, bands, grid.tile_h, grid.tile_w):
        raise ValueError(f"pool buffers are {pool.shape}, batches need {(batch_size, bands, grid.tile_h, grid.tile_w)}")
    strip = np.empty((bands, grid.tile_h, grid.padded_width), dtype=dtype)
    vstrip = np.empty((1, grid.tile_h, grid.padded_width), dtype=bool)
    buf: torch.Tensor | None = None  # the batch being filled
    tiles: np.ndarray | None = None  # its numpy view
    keys: list[tuple[int, int]] = []
    strips: dict[int, np.ndarray] = {}
    for i, y0 in enumerate(grid.row_starts):
        r0, r1 = grid.row_span(i)
        top, h, w = r0 - y0, r1 - r0, grid.width
        valid = read_rows(r0, r1, strip[:, top:top + h, grid.pad:grid.pad + w])
        vstrip[0, top:top + h, grid.pad:grid.pad + w] = valid
        reflect_fill(strip, top, grid.pad, h, w)
        reflect_fill(vstrip, top, grid.pad, h, w)
        strips[i] = valid
        for j, x0 in enumerate(grid.col_starts):
            if buf is None:
                buf = pool.get()
                tiles = buf.numpy()
            c = x0 + grid.pad
            tile = tiles[len(keys)]
            tile[...] = strip[:, :, c:c + grid.tile_w]
            tile_valid = vstrip[0, :, c:c + grid.tile_w]
            if mean is not None:
                normalize_(tile, tile_valid, mean, float(std if std is not None else 1.0))
            elif not tile_valid.all():
                tile[:, ~tile_valid] = 0.0
            keys.append((i, j))
            if len(keys) == batch_size:
                yield Batch(buf, keys, strips, _releaser(pool, buf))
                buf, tiles, keys, strips = None, None, [], {}
    if keys:
        yield Batch(buf[:len(keys)], keys, strips, _releaser(pool, buf))  # type: ignore[index]


def _releaser(pool: BufferPool, buf: torch.Tensor) -> Callable[[], None]:
    return lambda: pool.put(buf)


def _drain(q: queue.Queue) -> None:
    """Drop every item waiting in ``q``."""
    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass


class Prefetcher:
    """Iterate ``make_iter()`` in a background thread through a queue of at most ``depth`` items.

    ``make_iter`` is called in the thread (open files there, so each thread has its own handle).
    Exceptions of the thread are re-raised in the consumer. :meth:`close` stops the thread early.
    """

    _DONE = object()

    def __init__(self, make_iter: Callable[[], Iterable[Any]], depth: int = 2) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(make_iter,), name="carl-geo-reader", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, make_iter: Callable[[], Iterable[Any]]) -> None:
        try:
            it = make_iter()
            try:
                for item in it:
                    if not self._put(("item", item)):
                        return
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
            self._put(("done", None))
        except BaseException as e:  # forwarded to the consumer
            self._put(("error", e))

    def __iter__(self) -> Iterator[Any]:
        while True:
            kind, value = self._queue.get()
            if kind == "item":
                yield value
            elif kind == "done":
                return
            else:
                raise value

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            _drain(self._queue)
            self._thread.join(timeout=0.05)

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class BlendAccumulator:
    """Weighted sums for the current tile row (``tile_h`` rows x raster width), on ``device``.

    Args:
        grid: the tile grid.
        channels: K, the prediction channels.
        emit: receives finished rows, in order.
        device: where the sums live (the model's device, so predictions never leave it).
    """

    def __init__(self, grid: TileGrid, channels: int, emit: RowEmitter, device: torch.device | str = "cpu") -> None:
        self.grid = grid
        self.emit = emit
        self.window = torch.from_numpy(grid.window()).to(device)
        self.acc = torch.zeros((channels, grid.tile_h, grid.width), dtype=torch.float32, device=device)
        self.wsum = torch.zeros((grid.tile_h, grid.width), dtype=torch.float32, device=device)
        self.valid = np.zeros((grid.tile_h, grid.width), dtype=bool)
        self.top = 0  # raster row of buffer row 0

    def begin_row(self, i: int, valid: np.ndarray) -> None:
        """Tile row ``i`` starts: emit the rows above it, store its valid mask."""
        r0, r1 = self.grid.row_span(i)
        self.flush(r0)
        self.valid[r0 - self.top:r1 - self.top] = valid

    def add(self, i: int, j: int, pred: torch.Tensor) -> None:
        """Add tile (i, j)'s (K, tile_h, tile_w) prediction, cropped to the raster."""
        g = self.grid
        y0, x0 = g.row_starts[i], g.col_starts[j]
        ry0, ry1 = max(0, y0), min(g.height, y0 + g.tile_h)
        cx0, cx1 = max(0, x0), min(g.width, x0 + g.tile_w)
        ty, tx = ry0 - y0, cx0 - x0
        h, w = ry1 - ry0, cx1 - cx0
        win = self.window[ty:ty + h, tx:tx + w]
        b0 = ry0 - self.top
        self.acc[:, b0:b0 + h, cx0:cx1].addcmul_(pred[:, ty:ty + h, tx:tx + w], win)
        self.wsum[b0:b0 + h, cx0:cx1] += win

    def flush(self, upto: int) -> None:
        """Emit rows ``top .. upto`` (exclusive) and shift the buffers up."""
        n = upto - self.top
        if n <= 0:
            return
        for a in range(0, n, EMIT_ROWS):  # in chunks, so the temporaries stay small
            b = min(n, a + EMIT_ROWS)
            self.emit(self.top + a, self.acc[:, a:b] / self.wsum[a:b], self.valid[a:b].copy())
        rest = self.grid.tile_h - n
        for t in (self.acc, self.wsum):
            t[..., :rest, :] = t[..., n:, :].clone()
            t[..., rest:, :] = 0
        self.valid[:rest] = self.valid[n:].copy()
        self.valid[rest:] = False
        self.top = upto

    def finish(self) -> None:
        self.flush(self.grid.height)


class BackgroundWriter:
    """Calls ``write(*item)`` for every :meth:`put` item, in order, in a background thread.

    The queue holds at most ``depth`` items (:meth:`put` blocks beyond that, bounding memory).
    An exception in ``write`` (e.g. disk full) is re-raised by the next :meth:`put` or by
    :meth:`close`; items after it are dropped. Use as a context manager: leaving the block
    normally waits for every write; leaving with an exception stops the thread without waiting.
    """

    _STOP = object()

    def __init__(self, write: Callable[..., None], depth: int = 4) -> None:
        self._write = write
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._run, name="carl-geo-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._STOP:
                return
            if self._error is None and not self._abort.is_set():
                try:
                    self._write(*item)
                except BaseException as e:  # re-raised in the producer
                    self._error = e

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, *item: Any) -> None:
        self._raise()
        while True:
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                self._raise()
                if not self._thread.is_alive():
                    raise RuntimeError("the output writer thread stopped") from None

    def close(self) -> None:
        """Wait for all writes; re-raise a write error."""
        if self._thread.is_alive():
            self._queue.put(self._STOP)
            self._thread.join()
        self._raise()

    def abort(self) -> None:
        """Drop pending writes and stop the thread."""
        self._abort.set()
        if self._thread.is_alive():
            _drain(self._queue)
            self._queue.put(self._STOP)
            self._thread.join()

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def run_tiled(grid: TileGrid, batches: Iterable[Batch], predict: Predict, emit: RowEmitter,
              progress: Progress | None = None, skip: Callable[[int, int], bool] | None = None) -> int:
    """Predict every batch, blend on the predictions' device, emit all rows; returns the number of tiles.

    Args:
        grid: the tile grid.
        batches: from :func:`iter_batches` (possibly through a :class:`Prefetcher`).
        predict: e.g. :meth:`carl_geo.inference.runner.ModelRunner.predict`.
        emit: receives the blended rows.
        progress: called after each batch; returning False raises :class:`PredictionCancelled`.
        skip: ``skip(i, j)`` True: tile (i, j) is not run through the model; it adds zeros (with its
            blending weight), so only pixels that no other tile covers differ from a full run.
    """
    acc: BlendAccumulator | None = None
    done = 0
    for batch in batches:
        keep = list(range(len(batch.keys))) if skip is None else \
            [k for k, (i, j) in enumerate(batch.keys) if not skip(i, j)]
        if acc is None and not keep:
            keep = [0]  # one tile tells the number of output channels
        if len(keep) == len(batch.keys):
            pred = predict(batch.tiles, batch.release)
        elif keep:
            part = predict(batch.tiles[keep], lambda: None)  # a copy: the buffer can go back at once
            batch.release()
            pred = part.new_zeros((len(batch.keys), *part.shape[1:]))
            pred[keep] = part
        else:
            batch.release()
            pred = torch.zeros((len(batch.keys), acc.acc.shape[0], grid.tile_h, grid.tile_w),  # type: ignore[union-attr]
                               device=acc.acc.device)  # type: ignore[union-attr]
        if acc is None:
            acc = BlendAccumulator(grid, pred.shape[1], emit, pred.device)
        for (i, j), p in zip(batch.keys, pred):
            if i in batch.strips:
                acc.begin_row(i, batch.strips[i])
            acc.add(i, j, p)
        done += len(batch.keys)
        if progress is not None and progress(done, grid.n_tiles) is False:
            raise PredictionCancelled(f"prediction cancelled after {done} of {grid.n_tiles} tiles")
    if acc is None:
        raise RuntimeError("no tile was predicted")
    acc.finish()
    return done


def run_array(predict: Predict, data: np.ndarray, valid: np.ndarray, emit: RowEmitter, *, tile_size: int,
              overlap: int, batch_size: int, mean: float | None, std: float | None,
              needed: np.ndarray | None = None, grid: TileGrid | None = None) -> int:
    """The engine on an in-memory (C, H, W) array: fitted tiles, batches, cosine blending, rows to ``emit``.

    Used by :func:`~carl_geo.inference.predict_dataarray` (one dask chunk) and by polygon training's
    hold-out report, so both blend exactly as :func:`~carl_geo.inference.predict_raster` does.

    Args:
        predict: e.g. :meth:`carl_geo.inference.runner.ModelRunner.predict`.
        data: (C, H, W) pixels (any real dtype; float32 avoids a copy per tile).
        valid: (H, W) bool; invalid pixels are set to 0 after normalisation.
        emit: receives ``(row0, blended (K, h, W) tensor, valid (h, W))``.
        tile_size, overlap, batch_size: as in :class:`~carl_geo.inference.settings.PredictSettings`.
        mean, std: scalar normalisation; ``mean=None``: ``data`` is normalised already.
        needed: (H, W) bool, or None; tiles without a needed pixel are not run through the model
            (every tile that covers a needed pixel is, so needed pixels get the full blend).
        grid: the tiles to run (default ``TileGrid.build(H, W, tile_size, overlap)``); a grid with ``pad=0``
            whose tiles cover ``data`` exactly runs given tiles of a larger raster (a dask chunk).

    Returns:
        The number of tiles.
    """
    c, h, w = data.shape
    if grid is None:
        grid = TileGrid.build(h, w, int(tile_size), int(overlap))
    elif (grid.height, grid.width) != (h, w):
        raise ValueError(f"the grid covers {grid.height} x {grid.width} px, the data is {h} x {w}")

    def read_rows(r0: int, r1: int, buf: np.ndarray) -> np.ndarray:
        buf[...] = data[:, r0:r1]
        return valid[r0:r1]

    def unneeded(i: int, j: int) -> bool:
        y0, x0 = grid.row_starts[i], grid.col_starts[j]
        return not needed[max(0, y0):y0 + grid.tile_h, max(0, x0):x0 + grid.tile_w].any()  # type: ignore[index]

    batches = iter_batches(grid, read_rows, int(batch_size), bands=c, dtype=data.dtype, mean=mean, std=std)
    return run_tiled(grid, batches, predict, emit, skip=unneeded if needed is not None else None)
