"""Earth-observation analyzers: pure computations over gridded rasters and time series."""
