"""Learning on the line: fit models from good data with the runtime libraries only (no PyTorch)."""
