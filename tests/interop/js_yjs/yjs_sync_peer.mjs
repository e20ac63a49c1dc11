// A Yjs 13.6.33 client that syncs with a peerloom node over y-protocols 1.0.7 (tests/interop/test_docs_yjs_sync.py).
// It connects over TCP to the bridge of a node (argv: port seed edits batch), frames each y-protocols message with
// its lib0 varUint length, syncs (step 1 / step 2), then makes `edits` random edits of the text (UTF-16 positions,
// accents, CJK, emoji), the map "meta" and the array "items", `batch` per transaction, while receiving the others'.
// It prints {"done": true} when its edits are made; then each line on stdin is answered with its state:
// {"update": base64 of Y.encodeStateAsUpdate, "sv": base64 state vector, "text": ...}.
import * as Y from 'yjs'
import * as syncProtocol from 'y-protocols/sync'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import { createConnection } from 'node:net'
import { createInterface } from 'node:readline'

const [port, seed, edits, batch] = process.argv.slice(2).map(Number)
const doc = new Y.Doc()
const text = doc.getText('text')
const meta = doc.getMap('meta')
const items = doc.getArray('items')
const ALPHABET = [...'abc xyz é ñ ü 日本語 中文 한국어 😀🎉👍🏽 \n']
let state = seed
const random = () => { state = (state * 1103515245 + 12345) % 2147483648; return state / 2147483648 }
const pick = (list) => list[Math.floor(random() * list.length)]
const b64 = (bytes) => Buffer.from(bytes).toString('base64')

const socket = createConnection({ host: '127.0.0.1', port })
function send (message) {
  const framed = encoding.createEncoder()
  encoding.writeVarUint8Array(framed, message)
  socket.write(encoding.toUint8Array(framed))
}
doc.on('update', (update, origin) => {
  if (origin === 'remote') return
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, 0) // messageSync
  syncProtocol.writeUpdate(encoder, update)
  send(encoding.toUint8Array(encoder))
})

let buffer = new Uint8Array(0)
socket.on('data', (chunk) => {
  const joined = new Uint8Array(buffer.length + chunk.length)
  joined.set(buffer)
  joined.set(chunk, buffer.length)
  buffer = joined
  for (;;) {
    const decoder = decoding.createDecoder(buffer)
    let message
    try { message = decoding.readVarUint8Array(decoder) } catch { break } // an incomplete frame: wait for more
    buffer = buffer.slice(decoder.pos)
    const inner = decoding.createDecoder(message)
    if (decoding.readVarUint(inner) !== 0) continue // awareness: not used here
    const reply = encoding.createEncoder()
    encoding.writeVarUint(reply, 0)
    syncProtocol.readSyncMessage(inner, reply, doc, 'remote')
    if (encoding.length(reply) > 1) send(encoding.toUint8Array(reply))
  }
})

function editOnce () {
  const op = random()
  // characters, not UTF-16 units, are picked, then turned into UTF-16 positions: never inside a surrogate pair
  const chars = [...text.toString()]
  const units = (n) => chars.slice(0, n).join('').length
  if (op < 0.25 || chars.length === 0) {
    const content = Array.from({ length: 1 + Math.floor(random() * 4) }, () => pick(ALPHABET)).join('')
    text.insert(units(Math.floor(random() * (chars.length + 1))), content)
  } else if (op < 0.4) {
    const start = Math.floor(random() * chars.length)
    const end = Math.min(chars.length, start + 1 + Math.floor(random() * 5))
    text.delete(units(start), units(end) - units(start))
  } else if (op < 0.75) {
    meta.set(`k${Math.floor(random() * 50)}`, pick([random(), 'välue 😀', Math.floor(random() * 1000), null]))
  } else if (op < 0.9 || items.length === 0) {
    items.insert(Math.floor(random() * (items.length + 1)), [pick(['ü', 42, 1.5, '日本'])])
  } else {
    items.delete(Math.floor(random() * items.length), 1)
  }
}

socket.on('connect', () => {
  const encoder = encoding.createEncoder()
  encoding.writeVarUint(encoder, 0)
  syncProtocol.writeSyncStep1(encoder, doc)
  send(encoding.toUint8Array(encoder))
  let left = edits
  const step = () => {
    if (left <= 0) { console.log(JSON.stringify({ done: true })); return }
    doc.transact(() => { for (let i = 0; i < Math.min(batch, left); i++) editOnce() })
    left -= batch
    setImmediate(step)
  }
  step()
})

createInterface({ input: process.stdin }).on('line', () => {
  console.log(JSON.stringify({ update: b64(Y.encodeStateAsUpdate(doc)), sv: b64(Y.encodeStateVector(doc)), text: text.toString() }))
}).on('close', () => { socket.destroy(); process.exit(0) })
