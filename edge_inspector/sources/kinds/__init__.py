"""One module per source kind; :mod:`edge_inspector.sources.registry` finds them all."""
