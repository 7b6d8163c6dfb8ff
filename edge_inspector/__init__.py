"""edge-inspector: real-time visual and acoustic inspection for production lines."""

from pathlib import Path

__version__ = "0.1.0"

#: Repository root of a source checkout (where ``engines/`` and ``configs/`` live).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ENGINES_DIR = PROJECT_ROOT / "engines"
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "demo.toml"
