"""Streaming tiled inference: strips of rows in, blended rows out.

The engine walks the :class:`~carl_geo.inference.tiling.TileGrid` one tile row at a time:

1. :func:`iter_batches` reads the raster rows of one tile row (``read_rows(r0, r1, out)``) into a
   reused strip buffer, reflect-pads it in place and cuts it into normalised tiles, grouped in
   batches of ``batch_size``;
2. :class:`Prefetcher` runs that reading in a background thread with a bounded queue, so reading
   the next batch overlaps with the model working on the current one;
3. :class:`BlendAccumulator` adds ``window * prediction`` and ``window`` for the current tile row
   only (a buffer of ``tile_h`` rows x raster width) and hands every row that no later tile touches
   to ``emit(row0, blended (K, h, W), valid (h, W))``.

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

from carl_geo.inference.normalization import normalize_
from carl_geo.inference.tiling import TileGrid, reflect_fill

#: ``read_rows(r0, r1, out) -> valid``: write raster rows ``r0 .. r1`` (raw values) into the
#: (C, r1 - r0, W) view ``out`` and return their (r1 - r0, W) bool valid mask.
RowReader = Callable[[int, int, np.ndarray], np.ndarray]
#: ``emit(row0, blended (K, h, W) float32, valid (h, W) bool)``; rows arrive in order, each once.
RowEmitter = Callable[[int, np.ndarray, np.ndarray], None]
#: ``progress(done_tiles, total_tiles) -> bool | None``; False cancels.
Progress = Callable[[int, int], Any]


#: Rows handed to ``emit`` at a time.
EMIT_ROWS = 64


class PredictionCancelled(RuntimeError):
    """The progress callback returned False; no output file was left behind."""


@dataclass
class Batch:
    """Tiles for one model call.

    Attributes:
        tiles: (b, C, tile_h, tile_w) float32.
        keys: (tile row, tile column) index of each tile.
        strips: valid mask (r1 - r0, W) of each tile row whose first tile is in this batch.
    """

    tiles: np.ndarray
    keys: list[tuple[int, int]]
    strips: dict[int, np.ndarray] = field(default_factory=dict)


def iter_batches(grid: TileGrid, read_rows: RowReader, batch_size: int, *, bands: int, dtype: Any,
                 mean: float, std: float) -> Iterator[Batch]:
    """Batches of normalised tiles in row-major order; reads each tile row's raster rows once.

    The raw strip (``bands`` x ``tile_h`` x padded width, in the raster's ``dtype``) and its valid mask
    are reflect-padded in place in buffers reused for every tile row; tiles are converted to float32,
    normalised with ``(x - mean) / (std + 1e-6)`` and nodata set to 0 as they are copied into the batch.
    """
    strip = np.empty((bands, grid.tile_h, grid.padded_width), dtype=dtype)
    vstrip = np.empty((1, grid.tile_h, grid.padded_width), dtype=bool)
    tiles: np.ndarray | None = None  # the batch being filled
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
            if tiles is None:
                tiles = np.empty((batch_size, bands, grid.tile_h, grid.tile_w), dtype=np.float32)
            c = x0 + grid.pad
            tile = tiles[len(keys)]
            tile[...] = strip[:, :, c:c + grid.tile_w]
            normalize_(tile, vstrip[0, :, c:c + grid.tile_w], mean, std)
            keys.append((i, j))
            if len(keys) == batch_size:
                yield Batch(tiles, keys, strips)
                tiles, keys, strips = None, [], {}
    if keys:
        yield Batch(tiles[:len(keys)], keys, strips)  # type: ignore[index]


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
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class BlendAccumulator:
    """Weighted sums for the current tile row (``tile_h`` rows x raster width).

    Args:
        grid: the tile grid.
        channels: K, the prediction channels.
        emit: receives finished rows, in order.
    """

    def __init__(self, grid: TileGrid, channels: int, emit: RowEmitter) -> None:
        self.grid = grid
        self.emit = emit
        self.window = grid.window()
        self.acc = np.zeros((channels, grid.tile_h, grid.width), dtype=np.float32)
        self.wsum = np.zeros((grid.tile_h, grid.width), dtype=np.float32)
        self.valid = np.zeros((grid.tile_h, grid.width), dtype=bool)
        self.top = 0  # raster row of buffer row 0

    def begin_row(self, i: int, valid: np.ndarray) -> None:
        """Tile row ``i`` starts: emit the rows above it, store its valid mask."""
        r0, r1 = self.grid.row_span(i)
        self.flush(r0)
        self.valid[r0 - self.top:r1 - self.top] = valid

    def add(self, i: int, j: int, pred: np.ndarray) -> None:
        """Add tile (i, j)'s (K, tile_h, tile_w) prediction, cropped to the raster."""
        g = self.grid
        y0, x0 = g.row_starts[i], g.col_starts[j]
        ry0, ry1 = max(0, y0), min(g.height, y0 + g.tile_h)
        cx0, cx1 = max(0, x0), min(g.width, x0 + g.tile_w)
        ty, tx = ry0 - y0, cx0 - x0
        h, w = ry1 - ry0, cx1 - cx0
        win = self.window[ty:ty + h, tx:tx + w]
        b0 = ry0 - self.top
        self.acc[:, b0:b0 + h, cx0:cx1] += pred[:, ty:ty + h, tx:tx + w] * win
        self.wsum[b0:b0 + h, cx0:cx1] += win

    def flush(self, upto: int) -> None:
        """Emit rows ``top .. upto`` (exclusive) and shift the buffers up."""
        n = upto - self.top
        if n <= 0:
            return
        for a in range(0, n, EMIT_ROWS):  # in chunks, so the temporaries stay small
            b = min(n, a + EMIT_ROWS)
            self.emit(self.top + a, self.acc[:, a:b] / self.wsum[a:b], self.valid[a:b].copy())
        for buf in (self.acc, self.wsum, self.valid):
            rest = buf.shape[-2] - n
            buf[..., :rest, :] = buf[..., n:, :]
            buf[..., rest:, :] = 0
        self.top = upto

    def finish(self) -> None:
        self.flush(self.grid.height)


def run_tiled(grid: TileGrid, batches: Iterable[Batch], predict: Callable[[np.ndarray], np.ndarray],
              emit: RowEmitter, progress: Progress | None = None) -> int:
    """Predict every batch, blend, emit all rows; returns the number of tiles.

    Args:
        grid: the tile grid.
        batches: from :func:`iter_batches` (possibly through a :class:`Prefetcher`).
        predict: (b, C, th, tw) float32 -> (b, K, th, tw) float32.
        emit: receives the blended rows.
        progress: called after each batch; returning False raises :class:`PredictionCancelled`.
    """
    acc: BlendAccumulator | None = None
    done = 0
    for batch in batches:
        pred = predict(batch.tiles)
        if acc is None:
            acc = BlendAccumulator(grid, pred.shape[1], emit)
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
