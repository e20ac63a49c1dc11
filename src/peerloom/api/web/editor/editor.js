// The browser editor of a peerloom document: CodeMirror 6 bound to a Y.Doc with y-codemirror.next, kept in sync with
// the daemon over its WebSocket bridge (GET /api/v1/docs/{id}/ws, peerloom.apps.docs.browser) in y-protocols
// messages, the cursors and names of the other editors through y-protocols awareness.
//
// build.sh bundles this file with its npm dependencies into ../docs-editor.js (one ES module, nothing from the
// internet); the page (../docs.js) imports it only when a document is opened.
//
// Messages (each one WebSocket binary frame, lib0 variable-length integers, as y-websocket frames them):
//   0 sync: 0 step 1 (state vector) | 1 step 2 (update) | 2 update      (y-protocols/sync)
//   1 awareness update                                                  (y-protocols/awareness)
//   2 auth: 0 permission denied, reason                                 (y-protocols/auth)
//   100 ack (daemon to browser only): how many of this connection's step-2 and update messages the daemon has
//       applied and stored durably so far; an edit counts as saved once acknowledged.

import { EditorState, Compartment } from '@codemirror/state';
import { EditorView } from '@codemirror/view';
import { basicSetup } from 'codemirror';
import * as decoding from 'lib0/decoding';
import * as encoding from 'lib0/encoding';
import { yCollab } from 'y-codemirror.next';
import * as authProtocol from 'y-protocols/auth';
import * as awarenessProtocol from 'y-protocols/awareness';
import * as syncProtocol from 'y-protocols/sync';
import * as Y from 'yjs';

const MESSAGE_SYNC = 0;
const MESSAGE_AWARENESS = 1;
const MESSAGE_AUTH = 2;
const MESSAGE_ACK = 100;
const MAX_BACKOFF_MS = 10000;

/** A WebSocket to the daemon's bridge for one Y.Doc, reconnecting until destroyed. States: connecting, saving,
 * saved, offline, refused. */
class BridgeProvider {
  constructor(url, doc, awareness, onState) {
    this.url = url;
    this.doc = doc;
    this.awareness = awareness;
    this.onState = onState;
    this.socket = null;
    this.synced = false;
    this.sent = 0; // step-2 and update messages sent on this connection
    this.acked = 0;
    this.backoff = 500;
    this.timer = null;
    this.destroyed = false;
    this.refused = null;
    this.onDocUpdate = (update, origin) => {
      if (origin === this) return; // came from the daemon
      const encoder = encoding.createEncoder();
      encoding.writeVarUint(encoder, MESSAGE_SYNC);
      syncProtocol.writeUpdate(encoder, update);
      this.sendCounted(encoder);
    };
    this.onAwarenessUpdate = ({ added, updated, removed }, origin) => {
      if (origin !== 'local') return; // only our own state: the daemon relays the others'
      this.sendAwareness(added.concat(updated, removed));
    };
    doc.on('update', this.onDocUpdate);
    awareness.on('update', this.onAwarenessUpdate);
    this.connect();
  }

  state() {
    if (this.refused !== null) return 'refused';
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return this.timer ? 'offline' : 'connecting';
    if (!this.synced) return 'connecting';
    return this.acked === this.sent ? 'saved' : 'saving';
  }

  report() {
    this.onState(this.state(), this.refused);
  }

  connect() {
    this.timer = null;
    const socket = new WebSocket(this.url);
    socket.binaryType = 'arraybuffer';
    this.socket = socket;
    this.synced = false;
    this.sent = 0;
    this.acked = 0;
    socket.onopen = () => {
      this.backoff = 500;
      const encoder = encoding.createEncoder();
      encoding.writeVarUint(encoder, MESSAGE_SYNC);
      syncProtocol.writeSyncStep1(encoder, this.doc);
      socket.send(encoding.toUint8Array(encoder));
      if (this.awareness.getLocalState() !== null) this.sendAwareness([this.doc.clientID]);
      this.report();
    };
    socket.onmessage = (event) => this.receive(new Uint8Array(event.data));
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      const others = [...this.awareness.getStates().keys()].filter((id) => id !== this.doc.clientID);
      awarenessProtocol.removeAwarenessStates(this.awareness, others, this);
      if (!this.destroyed && this.refused === null) {
        this.timer = setTimeout(() => this.connect(), this.backoff);
        this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
      }
      this.report();
    };
  }

  receive(data) {
    const decoder = decoding.createDecoder(data);
    const type = decoding.readVarUint(decoder);
    if (type === MESSAGE_SYNC) {
      const encoder = encoding.createEncoder();
      encoding.writeVarUint(encoder, MESSAGE_SYNC);
      const syncType = syncProtocol.readSyncMessage(decoder, encoder, this.doc, this);
      if (syncType === syncProtocol.messageYjsSyncStep1) this.sendCounted(encoder); // our step 2
      else if (syncType === syncProtocol.messageYjsSyncStep2) this.synced = true;
    } else if (type === MESSAGE_AWARENESS) {
      awarenessProtocol.applyAwarenessUpdate(this.awareness, decoding.readVarUint8Array(decoder), this);
    } else if (type === MESSAGE_AUTH) {
      authProtocol.readAuthMessage(decoder, this.doc, (_doc, reason) => {
        this.refused = reason;
      });
    } else if (type === MESSAGE_ACK) {
      this.acked = decoding.readVarUint(decoder);
    }
    this.report();
  }

  sendCounted(encoder) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return; // sent with step 2 after reconnecting
    this.socket.send(encoding.toUint8Array(encoder));
    this.sent += 1;
    this.report();
  }

  sendAwareness(clients) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return;
    const encoder = encoding.createEncoder();
    encoding.writeVarUint(encoder, MESSAGE_AWARENESS);
    encoding.writeVarUint8Array(encoder, awarenessProtocol.encodeAwarenessUpdate(this.awareness, clients));
    this.socket.send(encoding.toUint8Array(encoder));
  }

  destroy() {
    this.destroyed = true;
    clearTimeout(this.timer);
    awarenessProtocol.removeAwarenessStates(this.awareness, [this.doc.clientID], 'local'); // sent before closing
    this.doc.off('update', this.onDocUpdate);
    this.awareness.off('update', this.onAwarenessUpdate);
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.close();
    }
  }
}

/**
 * Opens the editor of one document in `parent`.
 * @param {object} options
 * @param {HTMLElement} options.parent where the editor goes
 * @param {string} options.url the bridge's WebSocket address (token included)
 * @param {string} options.field the name of the document's shared text
 * @param {boolean} options.readOnly whether this node may only read the document
 * @param {{name: string, color: string}} options.user shown to the other editors next to this one's cursor
 * @param {(state: string, reason: string|null) => void} options.onState connecting, saving, saved, offline, refused
 * @returns {{destroy: () => void, setUser: (user: {name: string, color: string}) => void, text: () => string,
 *   state: () => string}}
 */
export function openEditor({ parent, url, field, readOnly, user, onState }) {
  const doc = new Y.Doc();
  const ytext = doc.getText(field);
  const awareness = new awarenessProtocol.Awareness(doc);
  const setUser = ({ name, color }) => awareness.setLocalStateField('user', { name, color, colorLight: `${color}33` });
  setUser(user);
  const editable = new Compartment();
  const lock = (readonly) => [EditorState.readOnly.of(readonly), EditorView.editable.of(!readonly)];
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc: ytext.toString(),
      extensions: [basicSetup, EditorView.lineWrapping, yCollab(ytext, awareness), editable.of(lock(readOnly))],
    }),
  });
  const provider = new BridgeProvider(url, doc, awareness, (state, reason) => {
    if (state === 'refused') view.dispatch({ effects: editable.reconfigure(lock(true)) });
    onState(state, reason);
  });
  const unload = () => provider.destroy();
  window.addEventListener('beforeunload', unload);
  return {
    destroy() {
      window.removeEventListener('beforeunload', unload);
      provider.destroy();
      view.destroy();
      awareness.destroy();
      doc.destroy();
    },
    setUser,
    text: () => ytext.toString(),
    state: () => provider.state(),
  };
}
