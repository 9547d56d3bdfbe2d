"""Install carl_geo, PyTorch and their dependencies into the plugin-private environment.

Runs QGIS's own Python (never another interpreter) in subprocesses:

1. checks the Python version and the free disk space;
2. creates a new venv ``<base>/envs/py3XY-<time>`` that also sees QGIS's own packages (a ``.pth``
   file), so numpy, GDAL and whatever QGIS ships are used, not installed again;
3. ``pip install`` of the carl_geo wheel bundled in the plugin ZIP (and its dependencies): online
   from PyPI plus PyTorch's index for the chosen CPU/CUDA build (CUDA falls back to CPU), or
   offline from a folder of wheels (``--no-index --find-links``);
4. imports torch and carl_geo with the new env and runs a tiny CARL forward pass;
5. only then makes the new env the active one (``current.json``) and deletes the previous env.

Progress, cancel and a log file throughout; a failure is one line (:mod:`carl_qgis.install_errors`)
and, like a cancel, leaves the previous installation untouched. Imports nothing from QGIS.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carl_qgis import environment
from carl_qgis.install_errors import Cause, classify, is_noise, last_error_line
from carl_qgis.torch_choice import PYPI_INDEX, TorchChoice

WHEELS_DIR = Path(__file__).with_name("wheels")
MIN_PYTHON = (3, 11)
#: Free disk space asked for before an online installation (PyTorch CPU ~1 GB, CUDA ~3-5 GB unpacked).
ONLINE_SPACE_BYTES = 3 * 10**9
#: Packages QGIS itself has loaded that must keep QGIS's version (GDAL's numpy bridge is compiled for it).
PINNED_FROM_QGIS = ("numpy",)
PTH_NAME = "_carl_qgis_qgis_site.pth"
#: Always required next to carl_geo: Debian's attrs 22.2 (QGIS's Python) satisfies affine's
#: declared ``attrs>=21.3`` but breaks it (rasterio transforms fail).
EXTRA_REQUIREMENTS = ("attrs>=23.2",)

VERIFY_CODE = r"""
import json, sys
out = {"python": sys.version.split()[0]}
import torch
out["torch"] = torch.__version__
out["cuda"] = bool(torch.cuda.is_available())
out["torch_cuda"] = torch.version.cuda
import carl_geo
out["carl_geo"] = carl_geo.__version__
out["carl_geo_file"] = carl_geo.__file__
for name in MODULES:
    __import__(name)
model = carl_geo.CARL(carl_geo.tiny_config()).eval()
with torch.no_grad():
    y = model(torch.zeros(1, 3, 16, 16), torch.tensor([0.49, 0.56, 0.665])).spatial
out["forward"] = list(y.shape)
print("CARL_QGIS_VERIFY " + json.dumps(out))
"""


#: pip's retries per request and socket timeout (pip's defaults, 5 and 15 s, retried one unreachable index for
#: 12 minutes over its many requests).
PIP_RETRIES = 1
PIP_TIMEOUT_S = 20
#: Environment folders older than this that are not the active one are removed after an installation.
STALE_ENV_S = 6 * 3600
#: Seconds the probe of the PyTorch index may take.
PROBE_TIMEOUT_S = 15


def probe_index(url: str, proxy: str | None = None, timeout: float = PROBE_TIMEOUT_S) -> None:
    """GET the index page ``url`` once (``torch/`` below it); raises OSError (urllib's URLError) when it cannot be
    reached."""
    import urllib.request

    handlers = [urllib.request.ProxyHandler({"http": proxy, "https": proxy})] if proxy else []
    opener = urllib.request.build_opener(*handlers)
    with opener.open(url.rstrip("/") + "/torch/", timeout=timeout) as response:
        response.read(1024)


def installed_build(versions: dict[str, Any]) -> str:
    """``"CPU"`` or ``"CUDA x.y"`` from the verified versions (``torch.version.cuda``; a ``+cpu`` / ``+cuXYZ``
    local version when that is missing)."""
    cuda = versions.get("torch_cuda")
    if cuda:
        return f"CUDA {cuda}"
    local = str(versions.get("torch", "")).partition("+")[2]
    if local.startswith("cu") and local[2:].isdigit():
        return f"CUDA {local[2:-1]}.{local[-1]}"
    return "CPU"


class InstallCancelled(Exception):
    """The user cancelled; the previous installation is unchanged."""


class InstallFailed(Exception):
    """Installation failed: :attr:`cause` (one line) and :attr:`log` (the full log file)."""

    def __init__(self, cause: Cause, log: Path | None = None) -> None:
        self.cause, self.log = cause, log
        where = f" (log: {log})" if log else ""
        super().__init__(f"{cause.message}{where}")


def bundled_wheel(folder: Path = WHEELS_DIR) -> Path | None:
    """The carl_geo wheel that ``build_zip.py`` put into the plugin (newest version), or None."""
    wheels = sorted(folder.glob("carl_geo-*.whl")) if folder.is_dir() else []
    return wheels[-1] if wheels else None


def qgis_site_dirs(exclude: Path | None = None) -> list[str]:
    """The package folders of the running QGIS's Python (site-/dist-packages on ``sys.path``), which the
    private env sees too; folders under ``exclude`` (the private envs) are left out."""
    ex = str(exclude.resolve()) + os.sep if exclude is not None else None
    dirs = []
    for p in sys.path:
        if p and os.path.isdir(p) and os.path.basename(p.rstrip("/\\")) in ("site-packages", "dist-packages"):
            full = os.path.abspath(p)
            if (ex is None or not (full + os.sep).startswith(ex)) and full not in dirs:
                dirs.append(full)
    return dirs


def qgis_pins(names: Sequence[str] = PINNED_FROM_QGIS) -> list[str]:
    """``name==version`` constraints for packages QGIS's Python already has (see :data:`PINNED_FROM_QGIS`)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return pins


@dataclass(frozen=True)
class InstallPlan:
    """What to install where.

    Attributes:
        python: QGIS's Python interpreter (:func:`carl_qgis.deps.qgis_python`).
        base: the plugin-private base folder (:func:`carl_qgis.environment.base_dir`).
        requirements: pip requirements; the bundled carl_geo wheel first.
        reinstall: requirements installed into the env even when QGIS's Python already has that
            version (the bundled carl_geo wheel: the env must carry its own copy).
        wheelhouse: offline installation from this folder of wheels (None: online).
        torch: the PyTorch build (online only; None: PyPI's default).
        constraints: pip constraints (``numpy==1.26.4``: keep QGIS's numpy).
        qgis_site_dirs: QGIS's package folders, visible from the env.
        proxy: ``http://user:pass@host:port`` for pip (None: pip's own settings/environment).
        verify_modules: imported with the new env before it is made active.
    """

    python: str
    base: Path
    requirements: tuple[str, ...]
    reinstall: tuple[str, ...] = ()
    wheelhouse: Path | None = None
    torch: TorchChoice | None = None
    constraints: tuple[str, ...] = ()
    qgis_site_dirs: tuple[str, ...] = ()
    proxy: str | None = None
    verify_modules: tuple[str, ...] = ("numpy", "rasterio", "torch", "carl_geo")

    def describe(self) -> list[str]:
        source = f"offline, wheels from {self.wheelhouse}" if self.wheelhouse else "online (PyPI" + (
            f" + {self.torch.index_url}" if self.torch and self.torch.index_url else "") + ")"
        lines = [f"Python: {self.python}", f"install folder: {self.base}", f"source: {source}",
                 f"packages: {', '.join(Path(r).name if os.sep in r or '/' in r else r for r in self.requirements)}"]
        if self.torch and not self.wheelhouse:
            lines.append(f"PyTorch: {self.torch.label} ({self.torch.reason})")
        if self.constraints:
            lines.append(f"kept from QGIS: {', '.join(self.constraints)}")
        return lines


def default_plan(wheelhouse: str | os.PathLike | None = None, torch_preference: str = "auto",
                 base: Path | None = None, extra_requirements: Sequence[str] = (),
                 proxy: str | None = None, wheel: Path | None = None) -> InstallPlan:
    """The plan for this QGIS: its Python, the bundled carl_geo wheel, PyTorch for this machine."""
    from carl_qgis.deps import qgis_python
    from carl_qgis.torch_choice import choose_torch

    wheel = wheel or bundled_wheel()
    if wheel is None:
        raise InstallFailed(Cause("no_wheel", "this copy of the plugin carries no carl_geo wheel (carl_qgis/wheels/): "
                                              "install the plugin from the ZIP made by qgis_plugin/build_zip.py"))
    base = base or environment.base_dir()
    house = Path(wheelhouse).expanduser().resolve() if wheelhouse else None
    return InstallPlan(
        python=qgis_python(), base=base, requirements=(str(wheel), *EXTRA_REQUIREMENTS, *extra_requirements),
        reinstall=(str(wheel),),
        wheelhouse=house, torch=None if house else choose_torch(torch_preference),
        constraints=tuple(qgis_pins()), qgis_site_dirs=tuple(qgis_site_dirs(base / "envs")), proxy=proxy)


@dataclass
class InstallResult:
    env: Path
    site_packages: Path
    log: Path
    versions: dict[str, Any] = field(default_factory=dict)
    torch_variant: str = ""
    seconds: float = 0.0


class Installer:
    """Runs an :class:`InstallPlan`. Thread-safe :meth:`cancel`; callbacks run in the calling thread.

    Args:
        plan: what to install.
        progress: ``progress(percent, text)``.
        line: receives every output line (also written to the log file).
        is_cancelled: polled a few times a second; True cancels (as :meth:`cancel` does).
    """

    def __init__(self, plan: InstallPlan, progress: Callable[[float, str], Any] | None = None,
                 line: Callable[[str], Any] | None = None, is_cancelled: Callable[[], bool] | None = None) -> None:
        self.plan = plan
        self._progress_cb = progress
        self._line_cb = line
        self._is_cancelled = is_cancelled
        self._cancel = threading.Event()
        self._percent = 0.0
        self._log: Any = None
        self.log_path: Path | None = None
        self.env: Path | None = None

    # -- public ---------------------------------------------------------------------------------
    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        if not self._cancel.is_set() and self._is_cancelled is not None and self._is_cancelled():
            self._cancel.set()
        return self._cancel.is_set()

    def run(self) -> InstallResult:
        """Install; returns where. Raises :class:`InstallCancelled` or :class:`InstallFailed` (the
        previous env stays active in both cases, the new env folder is deleted)."""
        t0 = time.time()
        plan = self.plan
        import datetime

        stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S%f")[:-3]  # ms: unique, sorts by time
        (plan.base / "logs").mkdir(parents=True, exist_ok=True)
        self.log_path = plan.base / "logs" / f"install-{stamp}.log"
        self._log = open(self.log_path, "w", encoding="utf-8", errors="replace")
        env = plan.base / "envs" / f"{environment.python_tag()}-{stamp}"
        self.env = env
        try:
            for text in plan.describe():
                self._say(text)
            self._step(1, "checking QGIS's Python")
            self._check_python()
            self._check_space()
            self._step(3, "creating the private environment")
            self._create_env(env)
            pip = self._pip_command(env)
            variant = self._install_requirements(pip, env)
            self._step(88, "installing carl_geo")
            if plan.reinstall:
                self._run_checked([*pip, "install", *self._common_pip_args(), "--no-deps", "--force-reinstall",
                                   "--no-index", *plan.reinstall], 88, 92)
            self._step(92, "checking that PyTorch and carl_geo load")
            versions = self._verify(env)
            self._step(98, "activating")
            environment.write_current(plan.base, {"env": env.name, "python": versions.get("python"),
                                                  "torch": versions.get("torch"), "cuda": versions.get("cuda"),
                                                  "carl_geo": versions.get("carl_geo"), "torch_build": versions.get("build"),
                                                  "torch_requested": variant,
                                                  "installed": datetime.datetime.now().isoformat(timespec="seconds"),
                                                  "log": str(self.log_path)})
            # only old leftovers: an environment another QGIS is building right now is younger than this
            environment.remove_unused_envs(plan.base, min_age_s=STALE_ENV_S)
            self._step(100, "done")
            seconds = time.time() - t0
            self._say(f"installed in {seconds:.0f} s: torch {versions.get('torch')}, {versions.get('build')} "
                      f"(CUDA available: {versions.get('cuda')}), carl_geo {versions.get('carl_geo')} in {env}")
            return InstallResult(env, environment.site_packages(env), self.log_path, versions, variant, seconds)
        except InstallCancelled:
            self._say("cancelled: the new environment is deleted, the previous installation is unchanged")
            self._discard(env)
            raise
        except InstallFailed as e:
            e.log = self.log_path
            self._say(f"FAILED: {e.cause.message}")
            self._discard(env)
            raise InstallFailed(e.cause, self.log_path) from None
        except Exception as e:  # noqa: BLE001 - anything else: same clean-up, one line
            self._say(f"FAILED: {type(e).__name__}: {e}")
            self._discard(env)
            raise InstallFailed(Cause("internal", f"{type(e).__name__}: {e}"), self.log_path) from e
        finally:
            self._log.close()

    # -- steps ----------------------------------------------------------------------------------
    def _check_python(self) -> None:
        out = self._run_checked([self.plan.python, "-c", "import sys; print('PYVER', *sys.version_info[:3])"], 1, 2)
        m = re.search(r"PYVER (\d+) (\d+) (\d+)", out)
        have = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
        if have < MIN_PYTHON:
            raise InstallFailed(Cause("python", f"QGIS's Python is {have[0]}.{have[1]}; carl_geo needs "
                                                f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer: install a newer QGIS"))
        if have != tuple(sys.version_info[:2]):
            raise InstallFailed(Cause("python", f"{self.plan.python} is Python {have[0]}.{have[1]} but QGIS runs "
                                                f"{sys.version_info[0]}.{sys.version_info[1]}"))

    def _check_space(self) -> None:
        if self.plan.wheelhouse is not None:
            if not self.plan.wheelhouse.is_dir():
                raise InstallFailed(Cause("wheelhouse", f"the wheel folder {self.plan.wheelhouse} does not exist"))
            need = 2 * sum(p.stat().st_size for p in self.plan.wheelhouse.glob("*.whl")) + 10**8
        else:
            need = ONLINE_SPACE_BYTES
        self.plan.base.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.plan.base).free
        if free < need:
            raise InstallFailed(Cause("disk_full", f"the disk is full: {free / 1e9:.1f} GB free in {self.plan.base}, "
                                                   f"about {need / 1e9:.1f} GB are needed; free some space"))

    def _create_env(self, env: Path) -> None:
        env.parent.mkdir(parents=True, exist_ok=True)
        self._run_checked([self.plan.python, "-m", "venv", "--without-pip", str(env)], 3, 6)
        site = environment.site_packages(env)
        if not site.is_dir():
            raise InstallFailed(Cause("no_venv", f"the virtual environment was not created in {env}"))
        dirs = list(self.plan.qgis_site_dirs)
        # one line, executed by site.py at start-up (a comprehension would not see 'site' there)
        (site / PTH_NAME).write_text(
            "import site; list(map(site.addsitedir, " + repr(dirs) + "))\n", encoding="utf-8")

    def _pip_command(self, env: Path) -> list[str]:
        """pip of QGIS's Python driving the env (``--python``, pip >= 22.3), else the env's own pip."""
        py = str(environment.env_python(env))
        probe = self._run([self.plan.python, "-m", "pip", "--version"], 6, 6)
        m = re.search(r"pip (\d+)\.(\d+)", probe[1])
        if probe[0] == 0 and m and (int(m.group(1)), int(m.group(2))) >= (22, 3):
            return [self.plan.python, "-m", "pip", "--python", py]
        self._run_checked([py, "-m", "ensurepip", "--default-pip"], 6, 8)
        return [py, "-m", "pip"]

    def _common_pip_args(self) -> list[str]:
        # bounded retries: an unreachable index fails in about a minute, not after 500 retries in 12 minutes
        args = ["--disable-pip-version-check", "--no-input", "--progress-bar", "off", "--no-warn-script-location",
                "--retries", str(PIP_RETRIES), "--timeout", str(PIP_TIMEOUT_S)]
        if self.plan.proxy:
            args += ["--proxy", self.plan.proxy]
        return args

    def _install_requirements(self, pip: list[str], env: Path) -> str:
        plan = self.plan
        constraints = env / "carl_qgis_constraints.txt"
        constraints.write_text("".join(c + "\n" for c in plan.constraints), encoding="utf-8")
        base = [*pip, "install", *self._common_pip_args(), "-c", str(constraints)]
        if plan.wheelhouse is not None:
            self._run_checked([*base, "--no-index", "--find-links", str(plan.wheelhouse), *plan.requirements], 8, 88,
                              pip_progress=True)
            return "wheelhouse"
        choice = plan.torch
        while True:
            if choice is not None and choice.index_url is not None:
                self._probe_index(choice.index_url)  # one probe: fail fast with the cause, never fall back silently
            source = ([] if choice is None or choice.index_url is None
                      else ["--index-url", choice.index_url, "--extra-index-url", PYPI_INDEX])
            try:
                self._run_checked([*base, *source, *plan.requirements], 8, 88, pip_progress=True)
                return choice.variant if choice else "default"
            except InstallFailed as e:
                fallback = choice.fallback if choice else None
                if fallback is None or e.cause.kind in ("network", "proxy", "tls", "disk_full", "permission"):
                    raise
                self._say(f"the {choice.label} build could not be installed ({e.cause.message}); "
                          f"trying the {fallback.label} build")
                choice = fallback

    def _probe_index(self, url: str) -> None:
        """One request to the PyTorch index (with the plan's proxy); an unreachable index is one line, at once."""
        self._say(f"checking {url}")
        try:
            probe_index(url, self.plan.proxy)
        except OSError as e:
            reason = getattr(e, "reason", None) or e
            raise InstallFailed(Cause("network", f"the PyTorch package index {url} cannot be reached ({reason}); "
                                                 "check the network or proxy (QGIS Settings > Options > Network), "
                                                 "or install from a folder of wheel files")) from None

    def _verify(self, env: Path) -> dict[str, Any]:
        code = f"MODULES = {list(self.plan.verify_modules)!r}\n" + VERIFY_CODE
        out = self._run_checked([str(environment.env_python(env)), "-c", code], 92, 98, dll_check=True)
        m = re.search(r"CARL_QGIS_VERIFY (\{.*\})", out)
        if not m:
            raise InstallFailed(Cause("verify", "the new environment did not report its versions; see the log"))
        versions = json.loads(m.group(1))
        build = installed_build(versions)
        versions["build"] = build
        wanted = self.plan.torch
        if self.plan.wheelhouse is None and wanted is not None and wanted.variant == "cpu" and build != "CPU":
            raise InstallFailed(Cause("variant", f"the CPU build of PyTorch was chosen but {build} "
                                                 f"(torch {versions.get('torch')}) was installed; nothing was changed"))
        site = str(environment.site_packages(env).resolve())
        if not str(Path(versions["carl_geo_file"]).resolve()).startswith(site):
            self._say(f"note: carl_geo loads from {versions['carl_geo_file']}, not from the new environment")
        return versions

    # -- processes --------------------------------------------------------------------------------
    def _subprocess_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)  # QGIS's own additions; the env sees QGIS's packages through its .pth
        env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", PIP_NO_INPUT="1")
        if self.plan.wheelhouse is not None:
            # offline means exactly the chosen folder: no index, links or constraints from pip's config
            for key in [k for k in env if k.startswith("PIP_") and k not in ("PIP_CERT", "PIP_NO_INPUT")]:
                del env[key]
            env["PIP_CONFIG_FILE"] = os.devnull
        return env

    def _run(self, cmd: list[str], start: float, end: float, pip_progress: bool = False) -> tuple[int, str]:
        """Run ``cmd``, stream its output to the log, poll cancel; returns (exit code, output)."""
        if self.cancelled:
            raise InstallCancelled()
        self._say("$ " + " ".join("<script>" if "\n" in c else _quote(c) for c in cmd))
        kwargs: dict[str, Any] = {}
        if sys.platform.startswith("win"):
            kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | getattr(
                subprocess, "CREATE_NO_WINDOW", 0)
        else:
            kwargs["start_new_session"] = True  # its own process group: cancel stops pip's children too
        try:
            # cwd: the private folder, so that no package in QGIS's working folder shadows the env's
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=self._subprocess_env(), cwd=str(self.plan.base), text=True, encoding="utf-8",
                                    errors="replace", **kwargs)
        except OSError as e:
            raise InstallFailed(Cause("python", f"cannot run {cmd[0]} ({e.strerror or e}): QGIS's Python was not "
                                                "found")) from None
        lines: queue.Queue[str | None] = queue.Queue()

        def reader() -> None:
            assert proc.stdout is not None
            for text in proc.stdout:
                lines.put(text.rstrip("\r\n"))
            lines.put(None)

        threading.Thread(target=reader, daemon=True).start()
        output: list[str] = []
        tracker = _PipProgress(start, end) if pip_progress else None
        done = False
        while not done:
            try:
                text = lines.get(timeout=0.2)
            except queue.Empty:
                text = ""
            if text is None:
                done = True
            elif text:
                output.append(text)
                self._say(text, show=not is_noise(text))
                if tracker is not None:
                    pct, what = tracker.update(text)
                    self._step(pct, what, quiet=True)
            if self.cancelled:
                _stop(proc)
                raise InstallCancelled()
        code = proc.wait()
        self._say(f"(exit code {code})")
        return code, "\n".join(output)

    def _run_checked(self, cmd: list[str], start: float, end: float, pip_progress: bool = False,
                     dll_check: bool = False) -> str:
        code, out = self._run(cmd, start, end, pip_progress)
        if code != 0:
            cause = classify(out, wheelhouse=self.plan.wheelhouse is not None)
            if cause is None:
                cause = Cause("failed", f"{Path(cmd[0]).name} {' '.join(cmd[1:3])} failed (exit code {code}): "
                                        f"{last_error_line(out)}")
            elif dll_check is False and cause.kind == "dll":
                cause = Cause("failed", f"{last_error_line(out)}")
            raise InstallFailed(cause)
        return out

    # -- reporting ----------------------------------------------------------------------------------
    def _say(self, text: str, show: bool = True) -> None:
        """Write ``text`` to the log file, and show it in the dialog unless ``show`` is False (noise)."""
        if self._log is not None:
            self._log.write(f"{time.strftime('%H:%M:%S')} {text}\n")
            self._log.flush()
        if show and self._line_cb is not None:
            self._line_cb(text)

    def _step(self, percent: float, text: str, quiet: bool = False) -> None:
        self._percent = max(self._percent, percent)
        if not quiet:
            self._say(f"[{self._percent:.0f}%] {text}")
        if self._progress_cb is not None:
            self._progress_cb(self._percent, text)

    def _discard(self, env: Path) -> None:
        shutil.rmtree(env, ignore_errors=True)


class _PipProgress:
    """Progress inside a ``pip install`` from its output: resolution (``Collecting``) fills the first
    two thirds (asymptotically: pip does not say how many packages will come), ``Installing collected
    packages`` jumps to 75 % of the span, ``Successfully installed`` to its end."""

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end, self.n = start, end, 0
        self.pct, self.what = start, "resolving packages"

    def update(self, line: str) -> tuple[float, str]:
        span = self.end - self.start
        s = line.strip()
        if s.startswith(("Collecting ", "Requirement already satisfied", "Processing ", "Looking in")):
            self.n += 1
            self.pct = max(self.pct, self.start + span * 0.65 * self.n / (self.n + 12))
            name = s.split()[1] if s.startswith("Collecting ") and len(s.split()) > 1 else ""
            self.what = f"resolving packages ({self.n}{': ' + name if name else ''})"
        elif s.startswith("Downloading "):
            self.what = "downloading " + s.split()[1].rsplit("/", 1)[-1]
        elif s.startswith("Installing collected packages"):
            self.pct, self.what = max(self.pct, self.start + span * 0.75), "installing packages"
        elif s.startswith("Successfully installed"):
            self.pct, self.what = self.end, "packages installed"
        return self.pct, self.what


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process and its children (its own process group on POSIX)."""
    if proc.poll() is not None:
        return
    try:
        if sys.platform.startswith("win"):
            proc.terminate()
        else:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        try:
            if sys.platform.startswith("win"):
                proc.kill()
            else:
                os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait(timeout=10)


def _quote(text: str) -> str:
    return f'"{text}"' if (" " in text or not text) else text
