// A Yjs 13.6.33 document driven over stdin/stdout, one JSON object a line, for tests/interop/test_docs_yjs.py.
// Commands: {"op":"apply","update":B64}, {"op":"insert","index":N,"text":S}, {"op":"delete","index":N,"length":N},
// {"op":"update","since":B64 state vector or absent}; {"op":"rich"} edits every kind of content current Yjs writes
// (map, array, numbers, bigint, binary, nested text, formatting, embed, XML element and text, subdocument) and
// answers a summary (map keys, array length, nested text); {"op":"hook"} adds a Y.XmlHook (valid Yjs that
// pycrdt 0.14.13 cannot decode). Each answers {"text", "length", "pending", ...}: the Y.Text "t" as Yjs sees it,
// its length in UTF-16 units, and whether any struct or deletion is still pending (not integrated).
import * as Y from 'yjs'
import { createInterface } from 'node:readline'

const doc = new Y.Doc()
const text = doc.getText('t')
const b64 = (bytes) => Buffer.from(bytes).toString('base64')
const bytes = (s) => new Uint8Array(Buffer.from(s, 'base64'))

function rich () {
  const map = doc.getMap('m')
  map.set('n', 1.5)
  map.set('obj', { k: [1, 'two', null, true, { deep: -7 }] })
  map.set('big', 2n ** 40n)
  map.set('bin', new Uint8Array([0, 1, 255]))
  map.set('sub', new Y.Doc({ guid: 'sub-doc' }))
  const arr = doc.getArray('a')
  arr.insert(0, [null, 'x', 3, -(2 ** 40), 0.25])
  arr.push([new Y.Text('nested 😀')])
  text.format(0, 1, { bold: true })
  text.insertEmbed(1, { image: 'x.png' })
  const xml = doc.getXmlFragment('x')
  const el = new Y.XmlElement('p')
  el.setAttribute('class', 'c')
  el.insert(0, [new Y.XmlText('hi')])
  xml.insert(0, [el])
  map.delete('n')
  arr.delete(1, 1)
  return { keys: [...map.keys()].sort(), length: arr.length, nested: arr.get(arr.length - 1).toString() }
}

for await (const line of createInterface({ input: process.stdin })) {
  const cmd = JSON.parse(line)
  const answer = {}
  if (cmd.op === 'apply') Y.applyUpdate(doc, bytes(cmd.update))
  else if (cmd.op === 'insert') text.insert(cmd.index, cmd.text)
  else if (cmd.op === 'delete') text.delete(cmd.index, cmd.length)
  else if (cmd.op === 'rich') answer.summary = rich()
  else if (cmd.op === 'hook') doc.getXmlFragment('x').insert(0, [new Y.XmlHook('hook')])
  else if (cmd.op === 'update') answer.update = b64(Y.encodeStateAsUpdate(doc, cmd.since ? bytes(cmd.since) : undefined))
  else throw new Error(`unknown op ${cmd.op}`)
  answer.text = text.toString()
  answer.length = text.length
  answer.pending = doc.store.pendingStructs !== null || doc.store.pendingDs !== null
  process.stdout.write(JSON.stringify(answer) + '\n')
}
