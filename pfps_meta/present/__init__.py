"""Presentation: text and HTML tables, figures, the report and atomic output writing."""
