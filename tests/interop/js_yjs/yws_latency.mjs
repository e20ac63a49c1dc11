// The reference for bench/docs_bench.py: two Yjs 13.6.33 clients (y-websocket 3.0.0 providers) syncing through an
// @y/websocket-server 0.1.1 server on loopback, all in this process. Client A inserts a character, and the time
// until client B's text shows it is one sample. argv: samples. Prints {"samples": [ms, ...]}.
import * as Y from 'yjs'
import { WebSocketServer, WebSocket } from 'ws'
import { WebsocketProvider } from 'y-websocket'
import { setupWSConnection } from '@y/websocket-server/utils'

const samples = Number(process.argv[2] || 500)
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
wss.on('connection', (conn, req) => setupWSConnection(conn, req, { docName: 'bench' }))
await new Promise((resolve) => wss.on('listening', resolve))
const url = `ws://127.0.0.1:${wss.address().port}`

const connect = () => {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(url, 'bench', doc, { WebSocketPolyfill: WebSocket, disableBc: true })
  return new Promise((resolve) => provider.on('sync', (synced) => { if (synced) resolve({ doc, provider }) }))
}
const a = await connect()
const b = await connect()
const textA = a.doc.getText('text')
const textB = b.doc.getText('text')
const out = []
for (let i = 0; i < samples; i++) {
  const arrived = new Promise((resolve) => {
    const seen = () => { textB.unobserve(seen); resolve(performance.now()) }
    textB.observe(seen)
  })
  const start = performance.now()
  textA.insert(textA.length, 'é')
  out.push((await arrived) - start)
}
console.log(JSON.stringify({ samples: out }))
a.provider.destroy()
b.provider.destroy()
wss.close()
process.exit(0)
