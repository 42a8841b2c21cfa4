"""Speech data: corpus readers, synthetic corpora and Lightning data modules.

Kept free of imports so that light tools (the espeak-ng server) can live inside the package.
"""
