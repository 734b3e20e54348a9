"""Recall: a read-only view of a space, the pipeline (seeds, spreading, ranking), its budget."""
