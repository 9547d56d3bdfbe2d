"""One-line causes of a failed installation, read from pip's (or Python's) output.

The most reported failures when installing PyTorch into QGIS: no network, a proxy, TLS
interception by a company firewall, a full disk, a Python version without wheels, and a DLL
that does not load after installation (Windows: missing Visual C++ runtime). Each gets one line
that says what happened and what to do; the full output is in the installation log.
Imports nothing from QGIS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Cause:
    """``kind`` (a stable id for tests and logs) and the one-line ``message``."""

    kind: str
    message: str


#: (kind, regular expression on the output, message). First match wins; order matters
#: (a TLS failure through a proxy mentions both).
RULES: tuple[tuple[str, str, str], ...] = (
    ("disk_full", r"No space left on device|\[Errno 28\]|There is not enough space on the disk|WinError 112",
     "the disk is full: free some space (PyTorch needs about 2-5 GB) and try again"),
    ("tls", r"CERTIFICATE_VERIFY_FAILED|SSLCertVerificationError|certificate verify failed|SSLError|"
            r"SSL: WRONG_VERSION_NUMBER",
     "the secure connection was refused (TLS certificate check failed): a company proxy or firewall inspects "
     "HTTPS. Ask IT for the proxy's CA certificate and set it in the environment variable PIP_CERT, or install "
     "offline from a folder of wheels"),
    ("proxy", r"ProxyError|407 Proxy Authentication|Tunnel connection failed|Cannot connect to proxy",
     "the proxy refused the connection: check the proxy settings (QGIS Settings > Options > Network) "
     "and its user name/password, or install offline from a folder of wheels"),
    ("network", r"NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution|"
                r"Name or service not known|getaddrinfo failed|nodename nor servname|Network is unreachable|"
                r"No route to host|ConnectTimeoutError|Read timed out|Connection reset by peer|"
                r"Max retries exceeded|ConnectionError",
     "no connection to the package servers (pypi.org, download.pytorch.org): check the internet connection "
     "and proxy, or install offline from a folder of wheels"),
    ("python", r"requires a different Python|Requires-Python|is not a supported wheel on this platform",
     "a package has no build for this QGIS's Python/platform: use a QGIS whose Python is 3.11 or newer "
     "(Help > About), or give a folder of wheels built for it"),
    ("no_pip", r"No module named pip|No module named 'pip'|ensurepip is not available|"
               r"No module named ensurepip",
     "QGIS's Python has no pip to install packages with: install pip for it (Debian/Ubuntu: "
     "sudo apt install python3-pip python3-venv) and try again"),
    ("no_venv", r"No module named venv|ensurepip.*returned non-zero|The virtual environment was not created",
     "QGIS's Python cannot create a virtual environment: install the venv module "
     "(Debian/Ubuntu: sudo apt install python3-venv) and try again"),
    ("dll", r"DLL load failed|WinError 126|WinError 127|WinError 1114|cannot open shared object file|"
            r"undefined symbol|GLIBC_[0-9.]+' not found|Library not loaded|image not found",
     "PyTorch was installed but its libraries do not load in QGIS's Python. On Windows install the Microsoft "
     "Visual C++ Redistributable (https://aka.ms/vs/17/release/vc_redist.x64.exe) and restart QGIS; "
     "otherwise try the CPU build"),
    ("permission", r"Permission denied|PermissionError|Access is denied|WinError 5\b",
     "the install folder is not writable (permission denied): close other QGIS windows, or choose another "
     "profile folder"),
)


#: Lines of pip's and the environment's output that say nothing a user can act on: they go to the installer's log
#: file only, not to the dialog (pip's notices about itself, its "Can't uninstall" of packages QGIS's Python owns,
#: scripts outside PATH, matplotlib's 3-D toolkit and unclosed-file warnings of the probes).
NOISE_PATTERNS = (
    re.compile(r"^\s*\[notice\]"),
    re.compile(r"Can't uninstall '"),
    re.compile(r"^\s*WARNING: The scripts? .* (is|are) installed in .* which is not on PATH"),
    re.compile(r"^\s*Consider adding this directory to PATH"),
    re.compile(r"Unable to import Axes3D"),
    re.compile(r"ResourceWarning: unclosed"),
    re.compile(r"^\s*DEPRECATION: .* pip 2\d"),
)


def is_noise(line: str) -> bool:
    """Whether an output line is noise (:data:`NOISE_PATTERNS`): kept in the log file, not shown to the user."""
    return any(p.search(line) for p in NOISE_PATTERNS)


def classify(output: str, wheelhouse: bool = False) -> Cause | None:
    """The first known cause found in ``output`` (pip's or Python's text), else None.

    With ``wheelhouse`` (offline installation), a requirement pip could not find means the folder
    lacks a wheel for it: that is said with the package name."""
    if wheelhouse:
        m = re.search(r"No matching distribution found for ([^\s;]+)", output)
        if m and not re.search(RULES[3][1], output):
            return Cause("wheelhouse", f"the wheel folder has no suitable wheel for {m.group(1)} (for this "
                                       "Python and platform): add it to the folder, or install online")
    for kind, pattern, message in RULES:
        if re.search(pattern, output):
            return Cause(kind, message)
    m = re.search(r"No matching distribution found for ([^\s;]+)", output)
    if m:
        return Cause("not_found", f"no installable version of {m.group(1)} was found for this Python and "
                                  "platform; see the log for what pip tried")
    return None


def last_error_line(output: str) -> str:
    """The last line of ``output`` that reads like an error (for causes :func:`classify` does not know)."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for line in reversed(lines):
        if re.match(r"(ERROR|error|\w*Error|Exception)\b", line):
            return line[:300]
    return lines[-1][:300] if lines else ""
