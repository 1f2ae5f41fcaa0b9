"""Inputs: reading study tables, converting what papers print, and the one validation entrance."""
