"""The error of the speech engines, apart from them so that the modules the engines use can raise it too."""


class TTSError(RuntimeError):
    """A text-to-speech engine is missing or failed; the message says how to get it working."""
