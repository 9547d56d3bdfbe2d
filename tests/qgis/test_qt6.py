"""QGIS 4 / Qt6 readiness of the plugin: ``supportsQt6=True``, only ``qgis.PyQt`` imports, no
Qt5-only API, and no short-form enum (Qt6 and QGIS 4 accept only fully scoped enums such as
``Qgis.MessageLevel.Warning``). The enum check resolves every ``Class.Member`` of the plugin's
code against the real QGIS classes, so it cannot miss a spelling a list would not know."""

from __future__ import annotations

import ast
import configparser
import importlib
import io
import re
import tokenize
from pathlib import Path

import pytest

pytest.importorskip("qgis.core", reason="needs QGIS's Python bindings (Debian python3-qgis); "
                                        "run scripts/run_qgis_tests.sh")

pytestmark = pytest.mark.qgis

PLUGIN = Path(__file__).resolve().parents[2] / "qgis_plugin" / "carl_qgis"
SOURCES = sorted(PLUGIN.rglob("*.py"))

#: Qt5-only spellings (removed or moved in Qt6 / QGIS 4) -> what to write instead.
QT5_PATTERNS = {
    r"^\s*(from|import)\s+PyQt[56]\b": "import from qgis.PyQt",
    r"^\s*(from|import)\s+sip\b": "from qgis.PyQt import sip",
    r"\.exec_\(": "exec() (exec_ is gone in PyQt6)",
    r"\bQRegExp\b": "QRegularExpression",
    r"\bQDesktopWidget\b|\.desktop\(\)": "QScreen / QGuiApplication.screens()",
    r"\bQStringList(Model)?\b|\bQString\b": "Python str",
    r"\bQVariant\.(Int|Double|String|LongLong|Bool|Date|DateTime)\b": "QMetaType.Type (or a field spec string)",
    r"\bQt\.MidButton\b": "Qt.MouseButton.MiddleButton",
    r"\.(width|height)\(['\"]": "horizontalAdvance",
    r"QtWidgets\s+import[^\n]*\bQ(Action|ActionGroup|Shortcut)\b": "carl_qgis.compat.QAction (QtGui in Qt6)",
    r"\bQgsProcessingAlgorithm\.Flag\w*\b|\bQgsProcessingParameterDefinition\.Flag\w*\b":
        "carl_qgis.compat (QGIS 4 moved these flags to Qgis.*)",
}
COMPAT = PLUGIN / "compat.py"  # the one place allowed to name both spellings


def test_metadata_declares_qt6() -> None:
    meta = configparser.ConfigParser()
    meta.read(PLUGIN / "metadata.txt", encoding="utf-8")
    assert meta["general"]["supportsQt6"] == "True"
    assert meta["general"]["qgisMinimumVersion"] == "3.22"
    # since May 2026 plugins.qgis.org lists a plugin for QGIS 4 only when its maximum version reaches 4.0
    # (supportsQt6 alone is ignored)
    maximum = tuple(int(v) for v in meta["general"]["qgisMaximumVersion"].split("."))
    assert maximum >= (4, 0) and maximum < (5, 0)


def test_build_zip_uses_the_local_setuptools_only_when_it_can_build_the_project() -> None:
    import sys

    sys.path.insert(0, str(PLUGIN.parent))
    import build_zip

    assert not build_zip.local_setuptools_ok("65.5.0") and not build_zip.local_setuptools_ok("76.1")
    assert build_zip.local_setuptools_ok("77.0.3") and build_zip.local_setuptools_ok("80.9.0")
    pyproject = (PLUGIN.parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    assert 'requires = ["setuptools>=77"]' in pyproject  # what an isolated build then installs


def code_lines(path: Path) -> list[str]:
    """The lines of a Python file with its comments blanked out (tokenize knows what is a comment)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline):
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            lines[row - 1] = lines[row - 1][:col]
    return lines


@pytest.mark.parametrize("pattern", sorted(QT5_PATTERNS))
def test_no_qt5_only_api(pattern: str) -> None:
    hits = []
    for path in SOURCES:
        if path == COMPAT:
            continue
        for number, line in enumerate(code_lines(path), 1):
            if re.search(pattern, line):
                hits.append(f"{path.relative_to(PLUGIN)}:{number}: {line.strip()}")
    assert not hits, f"Qt5-only API, use {QT5_PATTERNS[pattern]}:\n" + "\n".join(hits)


def _imported_names(tree: ast.Module) -> dict[str, object]:
    """Name -> object for ``from qgis... import X`` statements of a module (Qt and QGIS classes)."""
    names: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("qgis"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                obj = getattr(module, alias.name, None)
                if isinstance(obj, type):
                    names[alias.asname or alias.name] = obj
    return names


def _is_enum_member(value: object) -> bool:
    import enum

    if isinstance(value, enum.Enum):
        return True
    # sip (PyQt5) enum members are instances of an int subclass named after the enum
    return isinstance(value, int) and type(value) not in (int, bool)


def short_enum_uses(path: Path) -> list[str]:
    """``Class.Member`` expressions in ``path`` where Member is an enum value (short form)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = _imported_names(tree)
    parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in names):
            continue
        parent = parents.get(id(node))
        if isinstance(parent, ast.Attribute):  # Class.Enum.Member: scoped
            continue
        value = getattr(names[node.value.id], node.attr, None)
        if _is_enum_member(value):
            found.append(f"{path.relative_to(PLUGIN)}:{node.lineno}: {node.value.id}.{node.attr} "
                         f"(write {node.value.id}.{type(value).__name__}.{node.attr})")
    return found


def test_enums_are_fully_scoped(qgis_app: object) -> None:
    found = [hit for path in SOURCES for hit in short_enum_uses(path)]
    assert not found, "short-form enums (removed in Qt6 / QGIS 4):\n" + "\n".join(found)


def test_the_scan_catches_short_forms(tmp_path: Path, qgis_app: object) -> None:
    """The check itself: it flags Qt's and QGIS's short forms and accepts the scoped ones."""
    sample = PLUGIN / "_scan_sample.py"
    sample.write_text("from qgis.core import Qgis, QgsProcessingParameterNumber\nfrom qgis.PyQt.QtCore import Qt\n"
                      "a = Qgis.Warning\nb = Qt.AlignLeft\nc = QgsProcessingParameterNumber.Integer\n"
                      "d = Qgis.MessageLevel.Warning\ne = Qt.AlignmentFlag.AlignLeft\n")
    try:
        hits = short_enum_uses(sample)
    finally:
        sample.unlink()
    assert [h.split(": ")[1].split(" ")[0] for h in hits] == ["Qgis.Warning", "Qt.AlignLeft",
                                                               "QgsProcessingParameterNumber.Integer"]
