"""The speed machinery behind one door: everything that reaches into private internals of nutpie,
PyTensor, Numba, xarray or lazy_loader.

One switch turns every private path off (:mod:`twinbayes.fitting.compile.speed`,
``TWINBAYES_PRIVATE_SPEEDUPS=0``); both paths give bit-identical draws.
"""
