"""The per-machine cache: optimised graphs, compiled blobs, engine choices and digest memos,
under EDGE_CLASSIFY_HOME, and the default model location.
"""
