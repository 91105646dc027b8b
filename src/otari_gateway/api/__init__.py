"""HTTP surface: one module per resource; handlers parse and hand over to the pipeline."""
