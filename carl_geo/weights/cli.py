"""``carl-geo weights list | download | verify | path``: the published weights files."""

from __future__ import annotations

import argparse
import sys
from typing import Any

EPILOG = """\
examples:
  carl-geo weights list                   # what is cached, where, and from which URL
  carl-geo weights download               # fetch the CARL-SSL checkpoint (1.33 GB, resumable)
  carl-geo weights verify                 # size, hash, keys and shapes of the cached file
  carl-geo weights download --force       # start over (deletes carl_geo's own partial download)
  carl-geo weights path                   # print the file's path (e.g. for --model)
environment: CARL_GEO_HOME (cache folder, default ~/.cache/carl_geo), CARL_GEO_WEIGHTS (path of the
CARL-SSL file), CARL_GEO_OFFLINE=1/true/yes/on (never download; 0/false/no/off or unset: download)."""


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``weights`` sub-command."""
    from carl_geo.weights.store import PUBLISHED

    p = subparsers.add_parser("weights", help="list, download, verify or locate the published CARL weights",
                              description="The published CARL weights: downloaded on demand into the cache, "
                                          "verified before use.", epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    names = sorted(PUBLISHED)
    sub.add_parser("list", help="known weights, their URL, cache path and state").set_defaults(func=_list)
    d = sub.add_parser("download", help="download (or resume) and verify")
    d.add_argument("name", nargs="?", default="carl_ssl", choices=names)
    d.add_argument("--force", action="store_true",
                   help="fetch again even if a verified file is present, and start over: delete carl_geo's own "
                        "partial download (e.g. one the server could not resume) first")
    d.set_defaults(func=_download)
    v = sub.add_parser("verify", help="check size, hash, keys, shapes and dtypes")
    v.add_argument("name", nargs="?", default="carl_ssl", choices=names)
    v.add_argument("--file", help="check this file against the layout instead of the cached one")
    v.set_defaults(func=_verify)
    pa = sub.add_parser("path", help="print where the file is (or will be)")
    pa.add_argument("name", nargs="?", default="carl_ssl", choices=names)
    pa.set_defaults(func=_path)
    return p


def _list(args: argparse.Namespace) -> int:
    from carl_geo.weights.store import PUBLISHED, offline, status

    for spec in PUBLISHED.values():
        s = status(spec)
        if s["present"]:
            state = f"present, {s['size'] / 1e9:.2f} GB" + (", downloaded " + s["manifest"]["downloaded"]
                                                             if s["manifest"].get("downloaded") else "")
        elif s["partial_bytes"]:
            state = f"partial download, {s['partial_bytes'] / 1e9:.2f} GB (resumes)"
        else:
            state = "not downloaded"
        print(f"{spec.name}: {spec.description} ({spec.size_hint})\n  state: {state}\n  path:  {s['path']}\n"
              f"  url:   {spec.url}")
    if offline():
        print("downloads are turned off (CARL_GEO_OFFLINE)")
    return 0


def _download(args: argparse.Namespace) -> int:
    from carl_geo.progress_bar import ProgressBar
    from carl_geo.weights.download import DownloadError
    from carl_geo.weights.store import download_weights, get_weights_file

    spec = get_weights_file(args.name)
    with ProgressBar(f"{spec.name}", "B", unit_scale=True, unit_divisor=1024) as bar:
        try:
            path = download_weights(spec, force=args.force, progress=bar, log=bar.log)
        except DownloadError as e:
            bar.close()
            print(f"carl-geo weights: error: {e}", file=sys.stderr)
            return 2
    print(path)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from carl_geo.weights.store import (
        NOT_PINNED,
        get_weights_file,
        verify_weights,
        weights_path,
    )

    spec = get_weights_file(args.name)
    path = args.file or weights_path(spec)
    layout = spec.layout()
    check = verify_weights(path, layout, expected_size=spec.size, expected_sha256=spec.sha256)
    if not check.ok:
        print(f"carl-geo weights: error: {path}: {check.message}", file=sys.stderr)
        return 2
    sha = f", SHA-256 {check.sha256}" if check.sha256 else ""
    pinned = "" if check.pinned else f"; {NOT_PINNED}"
    print(f"{path}: OK ({check.size} bytes, {check.n_tensors} tensors match the {layout.name}{sha}{pinned})")
    return 0


def _path(args: argparse.Namespace) -> int:
    from carl_geo.weights.store import get_weights_file, weights_path

    print(weights_path(get_weights_file(args.name)))
    return 0
