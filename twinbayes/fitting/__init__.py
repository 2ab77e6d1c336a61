"""Fitting: one twin's posterior (NUTS), the convergence gate and its ladder, sensitivity, calibration,
misfit checks and warnings, population fits.  The speed machinery lives in
:mod:`twinbayes.fitting.compile`."""
