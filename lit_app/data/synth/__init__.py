"""Synthetic speech corpora from offline text-to-speech engines."""
