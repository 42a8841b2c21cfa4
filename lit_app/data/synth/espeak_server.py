"""A tiny espeak-ng synthesis server, run as a script by :class:`lit_app.data.synth.tts.EspeakEngine`.

libespeak-ng keeps state between utterances that no API call resets (a static pitch-flutter index in the
wave generator), so the same text and voice give slightly different samples on each call inside one
process. This server initialises the library once and forks a child for every request: each utterance is
synthesised from the same pristine state, so a clip is a pure function of its settings.

It imports only the standard library and ``espeakng_loader`` to keep each fork cheap (about 5 ms).
Protocol: one JSON request per line on stdin; the reply on stdout is a 4-byte little-endian signed length
followed by that many bytes of int16 samples, or, for a negative length, that many bytes of error text.
"""

import ctypes
import json
import os
import struct
import sys

AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
ESPEAK_CHARS_UTF8 = 1
ESPEAK_RATE = 1
ESPEAK_PITCH = 3


def main() -> None:
    import espeakng_loader

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
        ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
    ]
    data_path = os.environ.get("LIT_APP_ESPEAK_DATA") or espeakng_loader.get_data_path()
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), 0)
    out = sys.stdout.buffer
    if rate <= 0:
        reply_error(out, f"espeak_Initialize failed ({rate}) with data at {data_path}")
        return
    samples = bytearray()
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def collect(wav, count, _events):
        if count > 0:
            samples.extend(ctypes.string_at(wav, 2 * count))
        return 0

    keep_alive = callback_type(collect)
    lib.espeak_SetSynthCallback(keep_alive)
    out.write(struct.pack("<i", rate))
    out.flush()

    for line in sys.stdin:
        request = json.loads(line)
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            os._exit(synthesise(lib, request, samples, write_fd))
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as child_output:
            reply = child_output.read()
        os.waitpid(pid, 0)
        out.write(reply if reply else struct.pack("<i", -len(b"no reply")) + b"no reply")
        out.flush()


def synthesise(lib, request: dict, samples: bytearray, fd: int) -> int:
    voice = request["voice"].encode()
    if lib.espeak_SetVoiceByName(voice) != 0:
        message = f"unknown espeak-ng voice {request['voice']!r}".encode()
        write_all(fd, struct.pack("<i", -len(message)) + message)
        return 0
    # Breathy and whispered variants draw noise from the library's generator, seeded from the clock.
    lib.espeak_ng_SetRandSeed(ctypes.c_long(int(request.get("seed", 0))))
    lib.espeak_SetParameter(ESPEAK_RATE, int(request.get("rate", 175)), 0)
    lib.espeak_SetParameter(ESPEAK_PITCH, int(request.get("pitch", 50)), 0)
    text = request["text"].encode() + b"\0"
    lib.espeak_Synth(text, len(text), 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None)
    lib.espeak_Synchronize()
    write_all(fd, struct.pack("<i", len(samples)) + bytes(samples))
    return 0


def reply_error(out, message: str) -> None:
    data = message.encode()
    out.write(struct.pack("<i", -len(data)) + data)
    out.flush()


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.close(fd)


if __name__ == "__main__":
    main()
