"""The applications over the library: edge-classify (images, videos, streams, results files),
edge-classify-bulk (Ray Data), edge-doctor, and the one shell they share.
"""
