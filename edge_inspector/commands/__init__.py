"""Command-line commands, each a thin module over the layers below (nothing imports these)."""
