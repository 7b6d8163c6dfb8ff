"""Held-out product families: the anomaly model's model card is measured on these, never tuned.

Five products unlike the classifier's training surfaces (brushed metal, paint, cast grain) and
unlike the development families, each with defects the classifier has no label for:

* ``label``   -- a printed label: header band, text lines, barcode, logo on paper;
* ``pcb``     -- a populated circuit board: traces under the mask, pads, vias, chips, silkscreen;
* ``knurl``   -- diamond-knurled metal (a periodic pattern, any phase part to part);
* ``turned``  -- the machined face of a turned disc: concentric tool marks, bore, chamfer;
* ``moulded`` -- a grained plastic moulding with an embossed rib, seen to its edge.
"""

from __future__ import annotations

from typing import Any

from training.anomaly.heldout_machined import Knurl, Moulded, Turned
from training.anomaly.heldout_printed import Label, Pcb

FAMILIES: tuple[Any, ...] = (Label(), Pcb(), Knurl(), Turned(), Moulded())
