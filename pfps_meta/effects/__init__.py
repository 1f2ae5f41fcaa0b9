"""Effects: the measure registry (MD, SMD, RR, ...) and effect sizes (yi, vi) from study data."""
