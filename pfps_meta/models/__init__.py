"""Models: from effect sizes (yi, vi, and V for dependent effects) to a fitted result object."""
