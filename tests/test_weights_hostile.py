"""Weights downloads against hostile servers and files the store does not own (issue #28: nothing lost,
nothing silently wrong, nothing that hangs).

Each test reproduces one failure with the loopback server of ``weights_server.py`` (never the internet)
and asserts what the user keeps: their files' bytes unchanged, one-line errors that name the file,
and a bounded time (small files, lowered timeouts).
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from weights_server import LoopbackHTTPSHandler, ServedFile, serve, tiny_ssl_checkpoint

from carl_geo.cli import main as cli_main
from carl_geo.errors import CarlGeoError, OutputPathError
from carl_geo.weights import (
    CARL_SSL,
    PUBLISHED,
    CheckpointLayout,
    DownloadError,
    OfflineError,
    VerificationError,
    download_weights,
    ensure_weights,
    make_opener,
    verify_weights,
)
from carl_geo.weights import download as download_module
from carl_geo.weights.download import lock_path, download_part_path
from carl_geo.weights.layout import load_state_dict
from carl_geo.weights.store import (
    NOT_PINNED,
    legacy_manifest_path,
    manifest_path,
    read_manifest,
)

FILENAME = "ssl_checkpoint_carl.ckpt"


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, CheckpointLayout, bytes]:
    """(file bytes, layout, the same keys and shapes with all-zero values and nothing else) of a small
    checkpoint in the published layout: the zero file is the small-scale "0.62 GB of zeros"."""
    folder = tmp_path_factory.mktemp("ckpt")
    path, _ = tiny_ssl_checkpoint(folder / "tiny_ssl.ckpt")
    state = load_state_dict(path)
    layout = CheckpointLayout.from_state_dict(state, "tiny CARL-SSL layout")
    zeros = folder / "zeros.ckpt"
    torch.save({"state_dict": {k: torch.zeros_like(v) for k, v in state.items()}}, zeros)
    assert zeros.stat().st_size != path.stat().st_size
    return path.read_bytes(), layout, zeros.read_bytes()


def spec_for(url: str, layout: CheckpointLayout, **pins):
    return CARL_SSL.with_(url=url, layout=lambda: layout, config="tiny", size_hint="6 MB", **pins)


def no_sleep(_seconds: float) -> None:
    pass


def changed(data: bytes) -> bytes:
    """``data`` with 4 kB in the middle zeroed: same size, zip directory intact, another SHA-256."""
    middle = len(data) // 2
    return data[:middle] + bytes(4096) + data[middle + 4096:]


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert text and "\n" not in text, text
    return text


def snapshot(*paths: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths}


def user_files(folder: Path, name: str = FILENAME) -> dict[Path, bytes]:
    """The files a user (or another program) keeps beside the weights path: names the store must not own."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        folder / f"{name}.json": b'{"my": "notes about these weights"}\n',
        folder / f"{name}.partial": b"another program's unfinished download",
        folder / f"{name}.partial.json": json.dumps({"url": "whatever", "total": 99}).encode(),
        folder / f"{name}.lock": b"not a pid, not a host\n",
    }
    for path, data in files.items():
        path.write_bytes(data)
    return files


# -- 1. nothing lost: the store writes and deletes only its own names -------------------------------------


def test_user_json_beside_the_weights_path_is_never_written(tiny_ckpt, home: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    data, layout, _ = tiny_ckpt
    mine = tmp_path / "mine" / "carl.ckpt"
    monkeypatch.setenv("CARL_GEO_WEIGHTS", str(mine))
    theirs = user_files(mine.parent, mine.name) | user_files(home)
    with serve(ServedFile(data)) as url:
        path = download_weights(spec_for(url, layout))
        assert path == mine and mine.read_bytes() == data
        monkeypatch.delenv("CARL_GEO_WEIGHTS")
        assert download_weights(spec_for(url, layout)).read_bytes() == data  # the cache copy too
    assert snapshot(*theirs) == theirs
    for folder, name in ((mine.parent, mine.name), (home, FILENAME)):
        record = json.loads((folder / f"{name}.carl-record.json").read_text())
        assert record["sha256"] == hashlib.sha256(data).hexdigest()
        assert read_manifest(folder / name) == record
        assert manifest_path(folder / name).name == f"{name}.carl-record.json"
        # nothing of the store is left but the file and its record
        assert sorted(p.name for p in folder.iterdir() if ".carl-" in p.name) == [f"{name}.carl-record.json"]


def test_failed_download_keeps_files_the_store_did_not_create(tiny_ckpt, home: Path) -> None:
    data, layout, zeros = tiny_ckpt
    theirs = user_files(home)
    # 404: the old store deleted <file>.partial and <file>.partial.json before it failed
    with serve(ServedFile(data, status=404)) as url, pytest.raises(DownloadError, match="HTTP 404") as info:
        download_weights(spec_for(url, layout))
    one_line(info)
    # a file that fails verification, and a dropped transfer: the store cleans up only after itself
    other = CheckpointLayout({"x": layout.tensors[next(iter(layout.tensors))]}, "other layout")
    with serve(ServedFile(zeros)) as url, pytest.raises(VerificationError):
        download_weights(spec_for(url, other))
    with serve(ServedFile(data, drops=[1000])) as url, pytest.raises(DownloadError, match="next download resumes"):
        download_weights(spec_for(url, layout), retries=0)
    assert snapshot(*theirs) == theirs
    assert sorted(p.name for p in home.iterdir()) == sorted([p.name for p in theirs] + [
        f"{FILENAME}.carl-download", f"{FILENAME}.carl-download.json"])
    assert not (home / FILENAME).exists() and not lock_path(home / FILENAME).exists()


def test_an_old_record_is_read_but_never_written(tiny_ckpt, home: Path) -> None:
    data, layout, _ = tiny_ckpt
    home.mkdir(parents=True)
    path = home / FILENAME
    path.write_bytes(data)
    old = {"url": "https://example.org/x", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
           "etag": None, "downloaded": "2026-01-01T00:00:00+00:00", "tensors": 250}
    legacy_manifest_path(path).write_text(json.dumps(old))
    before = legacy_manifest_path(path).read_bytes()
    served = ServedFile(data)
    with serve(served) as url:
        assert ensure_weights(spec_for(url, layout)) == path  # the old record's hash matched: no download
        assert served.requests == []
        path.write_bytes(changed(data))  # changed since: the old record's hash catches it, the file is re-fetched
        assert ensure_weights(spec_for(url, layout)).read_bytes() == data
    assert legacy_manifest_path(path).read_bytes() == before
    assert read_manifest(path)["url"] == url  # the new record, under the store's own name


# -- 2. nothing silently wrong ----------------------------------------------------------------------------


def test_unpinned_weights_say_layout_checked_checksum_not_pinned(tiny_ckpt, home: Path) -> None:
    _, layout, zeros = tiny_ckpt
    lines: list[str] = []
    with serve(ServedFile(zeros)) as url:  # zeros in the right shapes: only a pinned checksum could tell
        path = download_weights(spec_for(url, layout), log=lines.append)
    assert path.read_bytes() == zeros
    assert NOT_PINNED in lines[-1]
    check = verify_weights(path, layout)
    assert check.ok and not check.pinned and check.message == f"OK ({NOT_PINNED})"
    assert read_manifest(path)["sha256"] == hashlib.sha256(zeros).hexdigest()  # recorded at the first download
    lines.clear()
    with serve(ServedFile(zeros)) as url:
        download_weights(spec_for(url, layout), log=lines.append)
    assert lines == [f"{path} is present: OK ({NOT_PINNED})"]


def test_pinned_size_and_hash_refuse_zero_weights_with_the_published_keys(tiny_ckpt, home: Path) -> None:
    data, layout, zeros = tiny_ckpt
    target = home / FILENAME
    size, sha = len(data), hashlib.sha256(data).hexdigest()
    # the size is pinned: a server that announces another size is refused before a byte is written
    served = ServedFile(zeros)
    start = time.monotonic()
    with serve(served) as url, pytest.raises(DownloadError) as info:
        download_weights(spec_for(url, layout, size=size), sleep=no_sleep)
    text = one_line(info)
    assert f"announces {len(zeros)} bytes, the published file has {size}" in text
    assert len(served.requests) == 1 and time.monotonic() - start < 5
    assert not target.exists() and not download_part_path(target).exists()
    # only the hash is pinned: the same keys and shapes do not make it the published file
    with serve(ServedFile(changed(data))) as url, pytest.raises(VerificationError) as info:
        download_weights(spec_for(url, layout, sha256=sha))
    assert "differs from the published" in one_line(info)
    assert not target.exists() and not download_part_path(target).exists()
    # the published file passes, and says its checksum was checked
    lines: list[str] = []
    with serve(ServedFile(data)) as url:
        spec = spec_for(url, layout, size=size, sha256=sha)
        assert download_weights(spec, log=lines.append).read_bytes() == data
    assert lines[-1].endswith("tensors, OK)") and NOT_PINNED not in " ".join(lines)
    assert verify_weights(target, layout, expected_size=size, expected_sha256=sha).message == "OK"


def test_a_changed_file_is_refused_with_one_line_naming_it(tiny_ckpt, home: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    data, layout, _ = tiny_ckpt
    mine = tmp_path / "mine" / "carl.ckpt"
    served = ServedFile(data)
    with serve(served) as url:
        spec = spec_for(url, layout)
        # CARL_GEO_WEIGHTS names the user's file: a change is refused, online or not, and the file kept
        monkeypatch.setenv("CARL_GEO_WEIGHTS", str(mine))
        ensure_weights(spec)
        mine.write_bytes(changed(data))
        for offline in ("0", "1"):
            monkeypatch.setenv("CARL_GEO_OFFLINE", offline)
            with pytest.raises(OutputPathError) as info:
                ensure_weights(spec)
            text = one_line(info)
            assert str(mine) in text and "changed since" in text and "SHA-256" in text
        assert mine.read_bytes() == changed(data)
        # the cache copy, offline: it cannot be fetched again, and the error says which file and why
        monkeypatch.delenv("CARL_GEO_WEIGHTS")
        monkeypatch.setenv("CARL_GEO_OFFLINE", "0")
        cached = ensure_weights(spec)
        cached.write_bytes(changed(data))
        monkeypatch.setenv("CARL_GEO_OFFLINE", "1")
        with pytest.raises(OfflineError) as info:
            ensure_weights(spec)
        text = one_line(info)
        assert str(cached) in text and "changed since" in text
    assert len(served.requests) == 2


def test_https_redirected_to_http_is_refused(tiny_ckpt, home: Path) -> None:
    data, layout, _ = tiny_ckpt
    target = home / FILENAME
    served = ServedFile(data)
    with serve(served) as http_url:
        https_url = http_url.replace("http://", "https://")
        served.redirect = http_url.replace(FILENAME, "elsewhere.ckpt")
        # the default opener refuses the redirect itself: the http URL is never requested
        with pytest.raises(DownloadError) as info:
            download_weights(spec_for(https_url, layout), opener=make_opener(LoopbackHTTPSHandler()))
        text = one_line(info)
        assert https_url in text and served.redirect in text and "plain http" in text
        assert served.requests == [("GET", None)]
        # a caller's own opener follows it: the answer is refused before a byte is written
        opener = urllib.request.build_opener(LoopbackHTTPSHandler())
        with pytest.raises(DownloadError, match="does not follow a redirect from https to plain http") as info:
            download_weights(spec_for(https_url, layout), opener=opener)
        one_line(info)
        assert len(served.requests) == 3
        # http -> http is an ordinary redirect
        assert download_weights(spec_for(http_url, layout)).read_bytes() == data
    assert not download_part_path(target).exists()


# -- 3. nothing that hangs --------------------------------------------------------------------------------


def test_server_that_cuts_every_transfer_without_range_support_stops(tiny_ckpt, home: Path) -> None:
    data, layout, _ = tiny_ckpt
    # every transfer cut at the same byte, restarted at 0: no progress, so the retries run out
    served = ServedFile(data, ranges=False, cut_every=len(data) // 4)
    start = time.monotonic()
    with serve(served) as url, pytest.raises(DownloadError) as info:
        download_weights(spec_for(url, layout), sleep=no_sleep)
    assert str(download_part_path(home / FILENAME)) in one_line(info)
    assert len(served.requests) == 6 and time.monotonic() - start < 10
    # each transfer a little longer than the last: progress every time, so the byte budget stops it
    served = ServedFile(data, ranges=False, drops=[len(data) * k // 10 for k in range(1, 10)])
    with serve(served) as url, pytest.raises(DownloadError, match=r"stopped after receiving \d+ bytes in 8 ") as info:
        download_weights(spec_for(url, layout), sleep=no_sleep, retries=100)
    assert "3 times its size" in one_line(info) and len(served.requests) == 8
    # with Range support every cut is progress: the request budget bounds it
    served = ServedFile(data, cut_every=len(data) // 10)
    with serve(served) as url, pytest.raises(DownloadError, match="gave up after 4 requests") as info:
        download_weights(spec_for(url, layout), sleep=no_sleep, max_requests=4)
    one_line(info)
    assert len(served.requests) == 4 and time.monotonic() - start < 20


def test_stalled_server_is_reported_in_one_line(tiny_ckpt, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, layout, _ = tiny_ckpt
    monkeypatch.setattr(download_module, "READ_TIMEOUT_S", 0.5)
    third = len(data) // 3
    served = ServedFile(data, stall_after=third, stall_s=5.0)
    lines: list[str] = []
    start = time.monotonic()
    with serve(served) as url, pytest.raises(DownloadError) as info:  # a third of the file, then nothing
        download_weights(spec_for(url, layout), sleep=no_sleep, log=lines.append)
    elapsed = time.monotonic() - start
    text = one_line(info)
    assert f"sent no data for 0.5 s (the transfer stalled at byte {2 * third} of {len(data)})" in text
    assert str(download_part_path(home / FILENAME)) in text
    assert any("sent no data for 0.5 s" in line and "retrying" in line for line in lines)  # reported, not silent
    assert served.requests == [("GET", None), ("GET", f"bytes={third}-")]
    assert elapsed < 5
    # the same with the timeout given as an argument, and no stall retry
    served = ServedFile(data, stall_after=0)
    with serve(served) as url, pytest.raises(DownloadError, match="sent no data for 0.2 s"):
        download_weights(spec_for(url, layout), timeout=0.2, stall_retries=0)
    assert len(served.requests) == 1 and time.monotonic() - start < 8


def test_bad_resume_names_the_partial_file_and_force_starts_over(tiny_ckpt, home: Path) -> None:
    data, layout, _ = tiny_ckpt
    target = home / FILENAME
    part = download_part_path(target)
    cut = len(data) // 3
    served = ServedFile(data, drops=[cut])
    with serve(served) as url:
        spec = spec_for(url, layout)
        with pytest.raises(DownloadError):
            download_weights(spec, retries=0)
        kept = part.read_bytes()
        served.bad_resume = True  # answers Range requests from byte 0
        messages = []
        for _ in range(2):  # every later run fails the same way, and says which file to clear
            with pytest.raises(DownloadError) as info:
                download_weights(spec, sleep=no_sleep)
            messages.append(one_line(info))
            assert part.read_bytes() == kept
        assert messages[0] == messages[1]
        assert f"asked to resume at byte {cut}, the server answered from byte 0" in messages[0]
        assert str(part) in messages[0] and "--force" in messages[0] and "force=True" in messages[0]
        assert download_weights(spec, force=True).read_bytes() == data
    assert served.requests[-1] == ("GET", None) and not part.exists()


def test_cli_download_force_clears_a_partial_file_that_cannot_be_resumed(tiny_ckpt, home: Path, capsys,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    data, layout, _ = tiny_ckpt
    part = download_part_path(home / FILENAME)
    served = ServedFile(data, drops=[len(data) // 2])
    with serve(served) as url:
        monkeypatch.setitem(PUBLISHED, "carl_ssl", spec_for(url, layout))
        with pytest.raises(DownloadError):
            download_weights("carl_ssl", retries=0)
        served.bad_resume = True
        assert cli_main(["weights", "download"]) == 2
        err = capsys.readouterr().err
        assert str(part) in err and "--force" in err
        assert cli_main(["weights", "download", "--force"]) == 0
    assert (home / FILENAME).read_bytes() == data and not part.exists()


# -- 4. CARL_GEO_OFFLINE --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["2", "maybe", "offline", "1 0"])
def test_unknown_offline_value_is_an_error(tiny_ckpt, home: Path, monkeypatch: pytest.MonkeyPatch, capsys,
                                           value: str) -> None:
    data, layout, _ = tiny_ckpt
    monkeypatch.setenv("CARL_GEO_OFFLINE", value)
    served = ServedFile(data)
    with serve(served) as url:
        with pytest.raises(CarlGeoError) as info:
            ensure_weights(spec_for(url, layout))
        text = one_line(info)
        assert f"CARL_GEO_OFFLINE={value!r}" in text
        assert all(v in text for v in ("1, true, yes or on", "0, false, no, off"))
        monkeypatch.setitem(PUBLISHED, "carl_ssl", spec_for(url, layout))
        assert cli_main(["weights", "download"]) == 2
        assert "CARL_GEO_OFFLINE" in capsys.readouterr().err
    assert served.requests == [] and not home.exists()


@pytest.mark.parametrize(("value", "downloads"), [("0", True), ("off", True), ("", True), (" No ", True),
                                                  ("ON", False), (" yes", False), ("TRUE", False)])
def test_known_offline_values(tiny_ckpt, home: Path, monkeypatch: pytest.MonkeyPatch, value: str,
                              downloads: bool) -> None:
    data, layout, _ = tiny_ckpt
    monkeypatch.setenv("CARL_GEO_OFFLINE", value)
    with serve(ServedFile(data)) as url:
        if downloads:
            assert ensure_weights(spec_for(url, layout)).read_bytes() == data
        else:
            with pytest.raises(OfflineError, match="CARL_GEO_OFFLINE"):
                ensure_weights(spec_for(url, layout))
