"""Output: results folders (atomic, every path checked), NetCDF, history, the HTML report and figures."""
