"""minilib: the library of Embeddings from Scratch."""
__version__ = "0.1.0"
