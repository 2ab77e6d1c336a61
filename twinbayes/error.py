"""The one kind of error for failures caused by input.

Every file a user hands twinbayes (spec, study, patient data, FHIR bundle, results folder) is
untrusted.  Whatever is wrong with it ends as a :class:`TwinbayesError` whose message names the
file, the field and the fix; the command line prints it and exits with 2, never with a
traceback.  The specific errors (:class:`~twinbayes.spec.SpecError`,
:class:`~twinbayes.inputs.patient.PatientDataError`, :class:`~twinbayes.output.results.OutputError`,
:class:`~twinbayes.inputs.units.UnitError`, :class:`ResultsFolderError`) derive from it.
"""

from __future__ import annotations

__all__ = ["TwinbayesError", "ResultsFolderError", "SpecError", "PatientDataError"]


class TwinbayesError(Exception):
    """A failure caused by input (a file, a folder, an argument); the message says how to fix it."""


class ResultsFolderError(TwinbayesError, ValueError):
    """A results folder is not one twinbayes wrote, or a file in it is damaged or not a plain
    file (a symbolic link, a device, a folder); nothing in it or outside it was changed."""


class SpecError(TwinbayesError, ValueError):
    """A spec file is malformed.  The message names the file, the field and a fix."""

    def __init__(self, field: str, message: str, file: str | None = None):
        self.field = field
        self.file = file
        self.reason = message
        super().__init__(self._text())

    def _text(self) -> str:
        prefix = f"{self.file}: " if self.file else ""
        return f"{prefix}{self.field}: {self.reason}"

    def in_file(self, file: str) -> SpecError:
        return SpecError(self.field, self.reason, file)


class PatientDataError(TwinbayesError, ValueError):
    """Patient data are malformed; the message says where and how to fix them."""
