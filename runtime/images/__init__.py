"""Decoding untrusted images: finding them, sniffing their format, decoding them within limits,
attributing the codecs' messages, and the contract's preprocessing.
"""
