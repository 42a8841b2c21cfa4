"""A synthesiser that stays up as one process and reads a request per utterance on its standard input."""

from __future__ import annotations

import json
import struct
import subprocess
import tempfile
from typing import Any

from lit_app.data.synth.errors import TTSError


class ServerProcess:
    """Holds the process (:attr:`process`) and, where the engine keeps them, its error messages in a file (a pipe
    that nobody reads would fill and stop the process)."""

    process: subprocess.Popen
    errors = None

    def start(self, command: list[str], keep_errors: bool = True) -> None:
        self.errors = tempfile.TemporaryFile() if keep_errors else None
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.errors)

    def ask(self, request: dict[str, Any], died: str, failed: str = "") -> bytes:
        """Send ``request`` as a JSON line and return the reply: a 4-byte little-endian signed length and that many
        bytes, or for a negative length an error message, raised as ``failed`` + message (``died``: the process
        ended before it answered)."""
        self.process.stdin.write((json.dumps(request) + "\n").encode())
        self.process.stdin.flush()
        header = self.process.stdout.read(4)
        if len(header) < 4:
            raise TTSError(died)
        (size,) = struct.unpack("<i", header)
        payload = self.process.stdout.read(abs(size))
        if size < 0:
            raise TTSError(failed + payload.decode(errors="replace"))
        return payload

    def last_error(self, otherwise: str) -> str:
        """The last line the process wrote to its error file (``otherwise`` if none)."""
        if self.errors is None:
            return otherwise
        self.errors.seek(0)
        return (self.errors.read().decode(errors="replace").strip().splitlines()[-1:] or [otherwise])[0]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=10)
        if self.errors is not None:
            self.errors.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
