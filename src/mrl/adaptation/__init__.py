"""Post-hoc Matryoshka adaptors: nested embeddings from any frozen model's embeddings.

`MatryoshkaAdaptor` (scikit-learn contract) learns a map whose prefixes are good embeddings;
`mrl.adaptation.folders` reads its inputs and writes the adapted `mrl embed`-style folder.
Names load on first use (torch is imported only when an adaptor is).
"""

from mrl._lazy import lazy_exports

_EXPORTS = {
    "MatryoshkaAdaptor": "mrl.adaptation.adaptor",
    "adapt_folder": "mrl.adaptation.folders",
    "load_vectors": "mrl.adaptation.folders",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
