// A Yjs 13.6.33 document driven over stdin/stdout, one JSON object a line, for tests/interop/test_docs_yjs.py.
// Commands: {"op":"apply","update":B64}, {"op":"insert","index":N,"text":S}, {"op":"delete","index":N,"length":N},
// {"op":"update","since":B64 state vector or absent}. Each answers {"text", "length", "pending", "update"?}:
// the Y.Text "t" as Yjs sees it, its length in UTF-16 units, whether any struct or deletion is still pending.
import * as Y from 'yjs'
import { createInterface } from 'node:readline'

const doc = new Y.Doc()
const text = doc.getText('t')
const b64 = (bytes) => Buffer.from(bytes).toString('base64')
const bytes = (s) => new Uint8Array(Buffer.from(s, 'base64'))

for await (const line of createInterface({ input: process.stdin })) {
  const cmd = JSON.parse(line)
  const answer = {}
  if (cmd.op === 'apply') Y.applyUpdate(doc, bytes(cmd.update))
  else if (cmd.op === 'insert') text.insert(cmd.index, cmd.text)
  else if (cmd.op === 'delete') text.delete(cmd.index, cmd.length)
  else if (cmd.op === 'update') answer.update = b64(Y.encodeStateAsUpdate(doc, cmd.since ? bytes(cmd.since) : undefined))
  else throw new Error(`unknown op ${cmd.op}`)
  answer.text = text.toString()
  answer.length = text.length
  answer.pending = doc.store.pendingStructs !== null || doc.store.pendingDs !== null
  process.stdout.write(JSON.stringify(answer) + '\n')
}
