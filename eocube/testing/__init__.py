"""Seeded factories for tests, benchmarks and notebooks: no files fetched, no network.

- :mod:`eocube.testing.scenes`: tiny georegistered cubes generated per chunk, and tiny saved
  models (U-Net, dual-stream, change) for the inference tests;
- :mod:`eocube.testing.polygons`: random polygons and rasters, and the bridge to exactextract
  (the reference for exact coverage);
- :mod:`eocube.testing.estimates`: the estimates' inputs built from the synthetic city;
- :mod:`eocube.testing.builtup`: a built-up model scored on a synthetic city's truth;
- :mod:`eocube.testing.http`: a fault-injecting loopback HTTP server (files with Range, a
  small STAC API).

Each is imported on its own (``from eocube.testing import scenes``), so importing one does
not pull in the dependencies of the others.
"""
