"""Evidence: the curated PFP evidence base, analysis specs (analyses/*.toml) and extraction sheets."""
