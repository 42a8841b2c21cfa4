// Speaks for lit_app/data/synth/node_engines.py: GnuSpeech (an articulatory synthesiser, through its WebAssembly
// port) and SAM (the Software Automatic Mouth, a formant synthesiser of 1982), both from npm.
// Protocol, on standard input and output: a 4-byte little-endian int32 when ready (0, or minus the length of an
// error message that follows), then per JSON request line {engine, text, voice, control} a 4-byte
// int32 and that many bytes of a WAV file (negative: minus the length of an error message).
// Emscripten prints through console.log, which would break the protocol on standard output.
console.log = console.error
import { wrapEmscriptenModuleHeap } from 'wasm-heap-manager'
import { defaultTrmControlModelFileContent } from '@echogarden/gnuspeech-wasm/dist/utilities/DefaultTrmControlModel.js'
import SamJs from 'sam-js'
import { createInterface } from 'readline'

function send(payload, isError = false) {
  const header = Buffer.alloc(4)
  header.writeInt32LE(isError ? -payload.length : payload.length)
  process.stdout.write(header)
  process.stdout.write(payload)
}

const dataPath = '/data/en'
let gnuspeech  // the module and its heap, made on first use

async function gnuspeechModule() {
  if (!gnuspeech) {
    const { default: initializer } = await import('@echogarden/gnuspeech-wasm/wasm/gnuspeech.js')
    const m = await initializer()
    gnuspeech = { m, heap: wrapEmscriptenModuleHeap(m) }
  }
  return gnuspeech
}

// A voice is GnuSpeech's voice file (vocal-tract and glottal parameters) and settings of its control model (pitch,
// intonation, tempo), each line `key = value` of the package's defaults replaced.
async function speakGnuSpeech(text, voice, control) {
  const { m, heap } = await gnuspeechModule()
  const lines = Object.entries(voice).map(([key, value]) => `${key} = ${value}`)
  m.FS.writeFile(`${dataPath}/voice_lit_app.txt`, lines.join('\n') + '\n')
  let model = defaultTrmControlModelFileContent.replace(/^voice_name = .*$/m, 'voice_name = lit_app')
  for (const [key, value] of Object.entries(control)) {
    const line = new RegExp(`^${key} = .*$`, 'm')
    if (!line.test(model)) {
      throw new Error(`GnuSpeech's control model has no setting ${key}`)
    }
    model = model.replace(line, `${key} = ${value}`)
  }
  m.FS.writeFile(`${dataPath}/trm_control_model.txt`, model)
  const refs = [text, './out.wav', dataPath, './out-params.txt'].map((s) => heap.allocNullTerminatedUtf8String(s))
  try {
    m._GnuSpeech_synthesizeToFile(refs[0].address, refs[1].address, refs[2].address, refs[3].address, false)
    return Buffer.from(m.FS.readFile('./out.wav'))
  } finally {
    refs.forEach((ref) => ref.free())
  }
}

// A voice is SAM's four settings: speed (a duration: larger is slower), pitch (larger is lower), throat, mouth.
function speakSam(text, voice) {
  const sam = new SamJs(voice)
  const wav = sam.wav(text)
  if (!wav || wav.length <= 44) {
    throw new Error(`SAM could not say ${JSON.stringify(text)}`)
  }
  return Buffer.from(wav)
}

send(Buffer.alloc(0))
const lines = createInterface({ input: process.stdin })
for await (const line of lines) {
  try {
    const { engine, text, voice, control } = JSON.parse(line)
    if (engine === 'gnuspeech') {
      send(await speakGnuSpeech(text, voice, control))
    } else if (engine === 'sam') {
      send(speakSam(text, voice))
    } else {
      throw new Error(`unknown engine ${engine}`)
    }
  } catch (error) {
    send(Buffer.from(String(error && error.message ? error.message : error)), true)
  }
}
