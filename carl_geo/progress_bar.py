"""A terminal progress bar for the command line: a tqdm bar that appears on the first
``progress(done, total)`` call of a long job, so a job that fails early prints no empty bar."""

from __future__ import annotations

from typing import Any


class ProgressBar:
    """``progress(done, total)`` callback drawing a tqdm bar; :meth:`log` prints above the bar.

    Use as a context manager (the bar is closed on exit). ``tqdm_kwargs`` go to ``tqdm``.
    """

    def __init__(self, desc: str, unit: str, **tqdm_kwargs: Any) -> None:
        self.kwargs = dict(desc=desc, unit=unit, **tqdm_kwargs)
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, **self.kwargs)
        self.bar.update(done - self.bar.n)

    def log(self, msg: str) -> None:
        """Print ``msg`` without breaking the bar (terminal control characters shown as ``\\xNN``)."""
        from carl_geo.cli_runtime import printable

        (self.bar.write if self.bar is not None else print)(printable(msg))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
