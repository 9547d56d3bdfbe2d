"""Weights on demand (carl_geo.weights): download from a loopback HTTP server with Range support,
resume after a dropped connection, corruption detected and re-fetched, cancel, offline mode, the
CLI, and torchgeo's get_model downloading a missing checkpoint."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import urllib.error
from pathlib import Path

import pytest
import torch

import carl_geo
from carl_geo.cli import main as cli_main
from carl_geo.weights import (
    CARL_SSL,
    PUBLISHED,
    CheckpointLayout,
    DownloadCancelled,
    DownloadError,
    OfflineError,
    VerificationError,
    download_file,
    download_weights,
    ensure_weights,
    published_layout,
    verify_weights,
    weights_path,
)
from carl_geo.weights.download import describe_network_error, lock_path, download_part_path
from carl_geo.weights.layout import load_state_dict
from carl_geo.weights.store import manifest_path, read_manifest
from weights_server import ServedFile, serve, tiny_ssl_checkpoint

PUBLISHED_KEYS = Path(__file__).resolve().parents[2] / "shared" / "carl_reference" / "published_keys.json"


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict, CheckpointLayout]:
    """(file bytes, student backbone state, layout) of a small checkpoint in the published layout."""
    path, student = tiny_ssl_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_ssl.ckpt")
    layout = CheckpointLayout.from_state_dict(load_state_dict(path), "tiny CARL-SSL layout")
    return path.read_bytes(), student, layout


def spec_for(url: str, layout: CheckpointLayout):
    return CARL_SSL.with_(url=url, layout=lambda: layout, config="tiny", size_hint="6 MB")


def no_sleep(_seconds: float) -> None:
    pass


# -- the published layout ------------------------------------------------------------------------


def test_published_layout_is_package_data_and_matches_the_published_model() -> None:
    layout = published_layout()
    assert len(layout) == 733 and layout.n_elements == 155_328_896
    assert layout.min_file_bytes == 155_328_896 * 4
    if PUBLISHED_KEYS.is_file():  # the shipped copy is the reference file
        assert json.loads(PUBLISHED_KEYS.read_text()) == json.loads(
            (Path(carl_geo.__file__).parent / "weights" / "published_keys.json").read_text())
    with torch.device("meta"):  # shapes only, no memory
        model = carl_geo.CARL(carl_geo.published_config())
    student = {f"model.{k}": v for k, v in model.state_dict().items()}
    teacher = {f"teacher.{k}": v for k, v in model.state_dict().items()}
    backbone = {k: v for k, v in layout.tensors.items() if not k.startswith(("model.spectral_predictor",
                                                                               "model.spatial_predictor"))}
    assert CheckpointLayout(backbone).problems(student | teacher) == []


def test_layout_problems_name_each_kind() -> None:
    layout = CheckpointLayout.from_state_dict({"a": torch.zeros(2, 3), "b": torch.zeros(4), "c": torch.zeros(1)})
    problems = layout.problems({"a": torch.zeros(3, 2), "b": torch.zeros(4, dtype=torch.float16), "x": torch.zeros(1)})
    assert problems == ["1 missing keys: c", "1 unexpected keys: x",
                        "1 shape mismatches: a: file (3, 2) vs expected (2, 3)",
                        "1 dtype mismatches: b: file float16 vs expected float32"]


# -- downloads ----------------------------------------------------------------------------------------


def test_full_download_verifies_and_records_size_and_hash(tiny_ckpt, home: Path) -> None:
    data, _, layout = tiny_ckpt
    served = ServedFile(data)
    reports: list[tuple[int, int]] = []
    with serve(served) as url:
        path = download_weights(spec_for(url, layout), progress=lambda d, t: reports.append((d, t)))
    assert path == home / "ssl_checkpoint_carl.ckpt" and path.read_bytes() == data
    assert served.requests == [("GET", None)]
    assert reports[-1] == (len(data), len(data)) and all(t == len(data) for _, t in reports)
    assert [d for d, _ in reports] == sorted(d for d, _ in reports)
    manifest = read_manifest(path)
    assert manifest["size"] == len(data) and manifest["url"] == url and manifest["tensors"] == 250
    import hashlib

    assert manifest["sha256"] == hashlib.sha256(data).hexdigest()
    assert not download_part_path(path).exists()
    # present and verified: no second request
    with serve(served) as url:
        assert download_weights(spec_for(url, layout)) == path
    assert len(served.requests) == 1


def test_dropped_connection_is_resumed_with_range(tiny_ckpt, home: Path) -> None:
    data, _, layout = tiny_ckpt
    cut = len(data) * 2 // 5
    served = ServedFile(data, drops=[cut])
    with serve(served) as url:
        path = download_weights(spec_for(url, layout), sleep=no_sleep)
    assert path.read_bytes() == data
    assert served.requests == [("GET", None), ("GET", f"bytes={cut}-")]


def test_interrupted_download_resumes_in_a_later_run(tiny_ckpt, home: Path) -> None:
    data, _, layout = tiny_ckpt
    cut = len(data) // 3
    served = ServedFile(data, drops=[cut])
    target = home / "ssl_checkpoint_carl.ckpt"
    with serve(served) as url:
        with pytest.raises(DownloadError, match="the next download resumes") as info:
            download_weights(spec_for(url, layout), retries=0)
        assert "\n" not in str(info.value)
        # the partial file keeps its own name: nothing looks like a finished download
        assert not target.exists() and download_part_path(target).stat().st_size == cut
        assert "partial download" in _cli_output(["weights", "list"])
        path = download_weights(spec_for(url, layout))
    assert path.read_bytes() == data
    assert served.requests == [("GET", None), ("GET", f"bytes={cut}-")]
    assert not download_part_path(target).exists()


def test_server_without_range_support_restarts_from_zero(tiny_ckpt, home: Path) -> None:
    data, _, layout = tiny_ckpt
    served = ServedFile(data, drops=[1000], ranges=False)
    with serve(served) as url:
        path = download_weights(spec_for(url, layout), sleep=no_sleep)
    assert path.read_bytes() == data and len(served.requests) == 2


def test_corrupted_file_is_detected_and_fetched_again(tiny_ckpt, home: Path) -> None:
    data, _, layout = tiny_ckpt
    served = ServedFile(data)
    with serve(served) as url:
        spec = spec_for(url, layout)
        path = download_weights(spec)
        # same size, some bytes flipped in the middle: the recorded SHA-256 catches it
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2: len(raw) // 2 + 64] = bytes(64)
        path.write_bytes(bytes(raw))
        check = verify_weights(path, layout)
        assert not check.ok and "SHA-256" in check.message
        assert _cli(["weights", "verify", "--file", str(path)]) == 2  # the published layout: wrong keys too
        assert download_weights(spec) == path
        assert path.read_bytes() == data
        # a truncated file (e.g. copied by hand, no manifest): ensure_weights sees it and re-fetches
        manifest_path(path).unlink()
        path.write_bytes(data[: len(data) // 2])
        assert ensure_weights(spec) == path
        assert path.read_bytes() == data
    assert len(served.requests) == 3


def test_a_file_of_another_layout_is_refused_and_not_kept(tiny_ckpt, home: Path, tmp_path: Path) -> None:
    data, _, layout = tiny_ckpt
    other = tmp_path / "other.ckpt"
    # as large as the expected tensors, but other keys
    torch.save({"state_dict": {"model.embedder.weight": torch.zeros(4, 1, 8, 8), "x": torch.zeros(1_500_000)}}, other)
    served = ServedFile(other.read_bytes())
    with serve(served) as url:
        with pytest.raises(VerificationError, match="not the expected weights.*249 missing keys.*1 unexpected keys: x"):
            download_weights(spec_for(url, layout))
    target = home / "ssl_checkpoint_carl.ckpt"
    assert not target.exists() and not download_part_path(target).exists()


def test_cancel_leaves_no_partial_file(tiny_ckpt, home: Path) -> None:
    data, _, layout = tiny_ckpt
    served = ServedFile(data)
    calls = []

    def progress(done: int, total: int) -> bool:
        calls.append(done)
        return len(calls) < 2  # cancel at the second chunk

    with serve(served) as url:
        with pytest.raises(DownloadCancelled):
            download_weights(spec_for(url, layout), progress=progress, chunk_bytes=256 * 1024)
    assert calls == [256 * 1024, 512 * 1024]
    assert sorted(p.name for p in home.iterdir()) == []  # no .partial, no resume record, no file


def test_offline_mode_refuses_and_names_url_and_path(tiny_ckpt, home: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    data, _, layout = tiny_ckpt
    monkeypatch.setenv("CARL_GEO_OFFLINE", "1")
    served = ServedFile(data)
    with serve(served) as url:
        with pytest.raises(OfflineError) as info:
            ensure_weights(spec_for(url, layout))
    message = str(info.value)
    assert url in message and str(home / "ssl_checkpoint_carl.ckpt") in message and "CARL_GEO_OFFLINE" in message
    assert served.requests == [] and not home.exists()
    # the real entry names the Zenodo URL
    with pytest.raises(OfflineError, match="https://zenodo.org/records/18671944/files/ssl_checkpoint_carl.ckpt"):
        ensure_weights()
    assert _cli(["weights", "download"]) == 2


def test_http_errors_are_one_line_and_not_retried(tiny_ckpt, home: Path) -> None:
    data, _, layout = tiny_ckpt
    served = ServedFile(data, status=404)
    with serve(served) as url:
        with pytest.raises(DownloadError, match=r"does not exist \(HTTP 404\)"):
            download_weights(spec_for(url, layout), sleep=no_sleep)
    assert len(served.requests) == 1
    # nothing listens on this port: connection refused, retried, then one line
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    slept: list[float] = []
    with pytest.raises(DownloadError, match="connection to 127.0.0.1 failed") as info:
        download_file(f"http://127.0.0.1:{port}/x", home / "x", retries=2, sleep=slept.append)
    assert slept == [2.0, 4.0] and "\n" not in str(info.value)


def test_network_causes_are_named() -> None:
    url = "https://zenodo.org/records/18671944/files/ssl_checkpoint_carl.ckpt"
    cert = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] self-signed certificate in chain")
    assert "proxy or firewall that inspects HTTPS" in describe_network_error(urllib.error.URLError(cert), url)
    dns = socket.gaierror(-3, "Temporary failure in name resolution")
    assert describe_network_error(urllib.error.URLError(dns), url).startswith("no network: the name zenodo.org")
    proxy = urllib.error.HTTPError(url, 407, "Proxy Authentication Required", {}, None)
    assert "HTTPS_PROXY" in describe_network_error(proxy, url)


def test_not_enough_disk_space_is_refused_before_writing(tiny_ckpt, home: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    data, _, layout = tiny_ckpt
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with serve(ServedFile(data)) as url:
        with pytest.raises(DownloadError, match="not enough disk space .* CARL_GEO_HOME"):
            download_weights(spec_for(url, layout))


# -- paths, CLI, torchgeo -------------------------------------------------------------------------------


def test_paths_honour_home_and_weights_override(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert weights_path() == home / "ssl_checkpoint_carl.ckpt"
    monkeypatch.delenv("CARL_GEO_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert weights_path() == tmp_path / ".cache" / "carl_geo" / "ssl_checkpoint_carl.ckpt"
    monkeypatch.setenv("CARL_GEO_WEIGHTS", str(tmp_path / "mine.ckpt"))
    assert weights_path() == tmp_path / "mine.ckpt"
    assert _cli_output(["weights", "path"]).strip() == str(tmp_path / "mine.ckpt")


def test_cli_download_list_verify(tiny_ckpt, home: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    data, _, layout = tiny_ckpt
    with serve(ServedFile(data)) as url:
        monkeypatch.setitem(PUBLISHED, "carl_ssl", spec_for(url, layout))
        assert _cli(["weights", "download"]) == 0
        out = capsys.readouterr()
        assert out.out.strip().endswith(str(home / "ssl_checkpoint_carl.ckpt"))
        listing = _cli_output(["weights", "list"])
        assert "state: present, 0.01 GB" in listing and url in listing
        verified = _cli_output(["weights", "verify"])
        assert "OK" in verified and "250 tensors match the tiny CARL-SSL layout" in verified


def test_get_model_downloads_the_missing_checkpoint(tiny_ckpt, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torchgeo")
    from torchgeo.models import get_model, get_weight

    data, student, layout = tiny_ckpt
    served = ServedFile(data)
    weight = get_weight("CARL_Weights.CARL_SSL")
    assert weight.url == CARL_SSL.url
    with serve(served) as url:
        # the test entry: the loopback URL, the tiny layout and config (the published file is 1.33 GB)
        monkeypatch.setitem(PUBLISHED, "carl_ssl", spec_for(url, layout))
        model = get_model("carl", weights=weight)
        assert (home / "ssl_checkpoint_carl.ckpt").read_bytes() == data
        for key, value in student.items():
            torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
        assert set(weight.get_state_dict(progress=False)) == set(student)
    assert served.requests == [("GET", None)]  # the second call found the file


def _cli(argv: list[str]) -> int:
    return cli_main(argv)


def _cli_output(argv: list[str]) -> str:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli_main(argv) == 0
    return buf.getvalue()


def test_a_second_download_of_the_same_file_is_refused(tiny_ckpt, home: Path) -> None:
    import os

    data, _, layout = tiny_ckpt
    target = home / "ssl_checkpoint_carl.ckpt"
    home.mkdir(parents=True)
    lock = lock_path(target)  # <file>.carl-lock: a user's <file>.lock is never touched
    lock.write_text(f"{os.getpid()} {socket.gethostname()}\n")  # a live process holds it
    served = ServedFile(data)
    with serve(served) as url:
        with pytest.raises(DownloadError, match="another download of ssl_checkpoint_carl.ckpt is running"):
            download_weights(spec_for(url, layout))
        assert served.requests == [] and lock.exists()
        lock.write_text(f"{2**22 + 12345} {socket.gethostname()}\n")  # its process is gone: taken over
        assert download_weights(spec_for(url, layout)).read_bytes() == data
    assert not lock.exists()
