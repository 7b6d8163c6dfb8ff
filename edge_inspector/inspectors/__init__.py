"""inspectors."""
