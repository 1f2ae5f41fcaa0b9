"""Analysis: sensitivity, diagnostics, simulation, presets, GRADE and reproduction of published results."""
