"""What users read: the evaluation pipeline, the mapping file, plots, applying a mapping."""
