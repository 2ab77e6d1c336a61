"""The one kind of error for failures caused by input.

Every file a user hands twinbayes (spec, study, patient data, FHIR bundle, results folder) is
untrusted.  Whatever is wrong with it ends as a :class:`TwinbayesError` whose message names the
file, the field and the fix; the command line prints it and exits with 2, never with a
traceback.  The specific errors (:class:`~twinbayes.spec.SpecError`,
:class:`~twinbayes.patient.PatientDataError`, :class:`~twinbayes.results.OutputError`,
:class:`~twinbayes.units.UnitError`, :class:`ResultsFolderError`) derive from it.
"""

from __future__ import annotations

__all__ = ["TwinbayesError", "ResultsFolderError"]


class TwinbayesError(Exception):
    """A failure caused by input (a file, a folder, an argument); the message says how to fix it."""


class ResultsFolderError(TwinbayesError, ValueError):
    """A results folder is not one twinbayes wrote, or a file in it is damaged or not a plain
    file (a symbolic link, a device, a folder); nothing in it or outside it was changed."""
