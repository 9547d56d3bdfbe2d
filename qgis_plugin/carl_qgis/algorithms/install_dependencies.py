"""Processing algorithm "Install CARL dependencies" (``carl:installdependencies``): PyTorch, carl_geo
and their dependencies into the plugin-private environment (:mod:`carl_qgis.installer`), online or
from a folder of wheels. Runs without carl_geo (it is what installs it)."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputFile,
    QgsProcessingOutputFolder,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QCoreApplication

from carl_qgis.compat import FILE_FOLDER, FLAG_CAN_CANCEL, PARAM_ADVANCED
from carl_qgis.torch_choice import PREFERENCES


class InstallDependenciesAlgorithm(QgsProcessingAlgorithm):
    """Parameters: wheel folder (offline), PyTorch build, extra packages. Outputs: env folder, log, versions."""

    WHEELHOUSE = "WHEELHOUSE"
    TORCH = "TORCH"
    EXTRA_PACKAGES = "EXTRA_PACKAGES"
    ENVIRONMENT = "ENVIRONMENT"
    LOG = "LOG"
    VERSIONS = "VERSIONS"

    def tr(self, text: str) -> str:
        return QCoreApplication.translate(type(self).__name__, text)

    def createInstance(self) -> InstallDependenciesAlgorithm:  # noqa: N802
        return type(self)()

    def name(self) -> str:
        return "installdependencies"

    def displayName(self) -> str:  # noqa: N802
        return self.tr("Install CARL dependencies")

    def group(self) -> str:
        return ""

    def groupId(self) -> str:  # noqa: N802
        return ""

    def flags(self) -> Any:
        return super().flags() | FLAG_CAN_CANCEL

    def shortHelpString(self) -> str:  # noqa: N802
        return self.tr(
            "Installs PyTorch, carl_geo (carried inside this plugin) and the packages they need into a private folder "
            "of the plugin, using QGIS's own Python; nothing else on the computer changes. PyTorch: the CPU build, or "
            "the CUDA build when an NVIDIA GPU and driver are found (with the CPU build as fallback). Offline: give a "
            "folder of wheel files (.whl) for this QGIS's Python and platform. A cancelled or failed installation "
            "leaves the previous one working; the log file says everything pip did. The CARL algorithms work right "
            "after the installation.")

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterFile(
            self.WHEELHOUSE, self.tr("Offline: folder of wheel files (empty = download from the internet)"),
            behavior=FILE_FOLDER, optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.TORCH, self.tr("PyTorch build (auto = CUDA when an NVIDIA GPU is found, else CPU)"),
            options=list(PREFERENCES), defaultValue="auto", usesStaticStrings=True))
        extra = QgsProcessingParameterString(
            self.EXTRA_PACKAGES, self.tr("Additional packages (pip requirements, comma-separated)"), optional=True)
        extra.setFlags(extra.flags() | PARAM_ADVANCED)
        self.addParameter(extra)
        self.addOutput(QgsProcessingOutputFolder(self.ENVIRONMENT, self.tr("Private environment")))
        self.addOutput(QgsProcessingOutputFile(self.LOG, self.tr("Installation log")))
        self.addOutput(QgsProcessingOutputString(self.VERSIONS, self.tr("Installed versions")))

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        from carl_qgis.activation import use_installed_environment
        from carl_qgis.installer import Installer, InstallCancelled, InstallFailed, default_plan
        from carl_qgis.network import qgis_proxy_url

        wheelhouse = self.parameterAsFile(parameters, self.WHEELHOUSE, context) or None
        extra = [r.strip() for r in (self.parameterAsString(parameters, self.EXTRA_PACKAGES, context) or "").split(",")
                 if r.strip()]
        try:
            plan = default_plan(wheelhouse=wheelhouse,
                                torch_preference=self.parameterAsEnumString(parameters, self.TORCH, context) or "auto",
                                extra_requirements=extra, proxy=qgis_proxy_url())
        except InstallFailed as e:
            raise QgsProcessingException(str(e)) from None

        def progress(percent: float, text: str) -> None:
            feedback.setProgress(percent)
            feedback.setProgressText(text)

        installer = Installer(plan, progress=progress, line=feedback.pushConsoleInfo, is_cancelled=feedback.isCanceled)
        try:
            result = installer.run()
        except InstallCancelled:
            raise QgsProcessingException(
                "Installation cancelled; the previous installation (if any) is unchanged. "
                f"Log: {installer.log_path}") from None
        except InstallFailed as e:
            raise QgsProcessingException(f"Installation failed: {e}") from None
        note = use_installed_environment(plan.base)
        versions = (f"torch {result.versions.get('torch')} (CUDA: {result.versions.get('cuda')}), "
                    f"carl_geo {result.versions.get('carl_geo')}")
        feedback.pushInfo(f"Installed {versions} into {result.env} in {result.seconds:.0f} s; log: {result.log}")
        if note:
            feedback.reportError(note, fatalError=False)
        return {self.ENVIRONMENT: str(result.env), self.LOG: str(result.log), self.VERSIONS: versions}
