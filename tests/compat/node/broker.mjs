// Starts the real `runnel` binary for the KafkaJS tests (no mock): fresh temp data dir, free
// 127.0.0.1 port, deadline-bounded wait until the port accepts, SIGTERM then SIGKILL on stop.
// The broker's stdout/stderr go to a log file; `withBrokerLog` appends the lines a failing test
// caused to its error message.

import { spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
export const repoRoot = path.resolve(here, '..', '..', '..')

const START_DEADLINE_MS = Number(process.env.RUNNEL_COMPAT_START_DEADLINE ?? 60) * 1000
const STOP_DEADLINE_MS = 15000

export function runnelBinary() {
  if (process.env.RUNNEL_BIN) return path.resolve(process.env.RUNNEL_BIN)
  const target = process.env.CARGO_TARGET_DIR
    ? path.resolve(repoRoot, process.env.CARGO_TARGET_DIR)
    : path.join(repoRoot, 'target')
  return path.join(target, 'debug', 'runnel')
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

function accepts(host, port, timeoutMs = 250) {
  return new Promise(resolve => {
    const sock = net.connect({ host, port })
    const done = ok => {
      sock.destroy()
      resolve(ok)
    }
    sock.setTimeout(timeoutMs, () => done(false))
    sock.once('connect', () => done(true))
    sock.once('error', () => done(false))
  })
}

const sleep = ms => new Promise(r => setTimeout(r, ms))

export class RunnelBroker {
  constructor(name = 'kafkajs-broker') {
    this.name = name
    this.workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'runnel-kafkajs-'))
    this.dataDir = path.join(this.workdir, 'data')
    this.logPath = path.join(this.workdir, `${name}.log`)
    this.host = '127.0.0.1'
    this.port = null
    this.child = null
    this.exit = null
  }

  get bootstrap() {
    return `${this.host}:${this.port}`
  }

  alive() {
    return this.child !== null && this.exit === null
  }

  async start() {
    const bin = runnelBinary()
    if (!fs.existsSync(bin)) {
      throw new Error(`broker binary ${bin} not found: run \`cargo build -p runnel-cli\` (or scripts/test.sh), or set RUNNEL_BIN`)
    }
    let lastErr
    for (let attempt = 0; attempt < 3; attempt++) {
      this.port = await freePort()
      try {
        await this.#spawnAndWait(bin)
        return this
      } catch (e) {
        lastErr = e
        if (this.alive()) this.child.kill('SIGKILL')
      }
    }
    throw lastErr
  }

  async #spawnAndWait(bin) {
    const args = ['serve', '--data-dir', this.dataDir, '--listen', this.bootstrap]
    fs.appendFileSync(this.logPath, `\n===== start: ${bin} ${args.join(' ')}\n`)
    const fd = fs.openSync(this.logPath, 'a')
    this.exit = null
    this.child = spawn(bin, args, {
      cwd: this.workdir,
      stdio: ['ignore', fd, fd],
      env: { RUST_BACKTRACE: '1', ...process.env },
    })
    fs.closeSync(fd)
    this.exited = new Promise(resolve => {
      this.child.once('exit', (code, signal) => {
        this.exit = { code, signal }
        resolve(this.exit)
      })
    })
    const deadline = Date.now() + START_DEADLINE_MS
    for (;;) {
      if (this.exit) {
        throw new Error(`${this.name}: runnel exited (${JSON.stringify(this.exit)}) before accepting connections\n--- broker log ---\n${this.logText()}`)
      }
      if (await accepts(this.host, this.port)) return
      if (Date.now() > deadline) {
        throw new Error(`${this.name}: not accepting on ${this.bootstrap} within ${START_DEADLINE_MS} ms\n--- broker log ---\n${this.logText()}`)
      }
      await sleep(50)
    }
  }

  async stop() {
    if (!this.alive()) return this.exit
    this.child.kill('SIGTERM')
    let timer
    const timeout = new Promise(resolve => {
      timer = setTimeout(() => resolve('timeout'), STOP_DEADLINE_MS)
    })
    const res = await Promise.race([this.exited, timeout])
    clearTimeout(timer)
    if (res === 'timeout') {
      this.child.kill('SIGKILL')
      await this.exited
      this.exit.note = `did not exit within ${STOP_DEADLINE_MS} ms of SIGTERM; SIGKILLed`
    }
    return this.exit
  }

  async cleanup() {
    await this.stop()
    fs.rmSync(this.workdir, { recursive: true, force: true })
  }

  logSize() {
    try {
      return fs.statSync(this.logPath).size
    } catch {
      return 0
    }
  }

  logText(since = 0, limit = 15000) {
    let text
    try {
      text = fs.readFileSync(this.logPath).subarray(since).toString('utf8')
    } catch {
      return '(no broker log)'
    }
    return text.length > limit ? `... (${text.length - limit} characters cut)\n${text.slice(-limit)}` : text
  }

  status() {
    return `${this.name} on ${this.bootstrap}: ${this.alive() ? `running (pid ${this.child.pid})` : `exited ${JSON.stringify(this.exit)}`}`
  }
}

// Runs `fn`; if it throws, the broker log written meanwhile is appended to the error message.
export async function withBrokerLog(broker, fn) {
  const mark = broker.logSize()
  try {
    return await fn()
  } catch (e) {
    const extra = `\n--- ${broker.status()}; broker log during this test ---\n${broker.logText(mark)}`
    if (e instanceof Error) {
      e.message += extra
      throw e
    }
    throw new Error(String(e) + extra)
  }
}

// RUNNEL_COMPAT_BOOTSTRAP=host:port: use an already running broker instead (only for checking the
// tests themselves against a reference broker; the suite normally always starts the real binary).
export class ExternalBroker {
  constructor(bootstrap) {
    this.name = 'external'
    const i = bootstrap.lastIndexOf(':')
    this.host = bootstrap.slice(0, i).replace(/^\[|\]$/g, '')
    this.port = Number(bootstrap.slice(i + 1))
    this.bootstrap = bootstrap
  }
  async start() { return this }
  async stop() { return null }
  async cleanup() {}
  alive() { return true }
  logSize() { return 0 }
  logText() { return '(external broker: no log)' }
  status() { return `external broker at ${this.bootstrap}` }
}

export function makeBroker(name) {
  const ext = process.env.RUNNEL_COMPAT_BOOTSTRAP
  return ext ? new ExternalBroker(ext) : new RunnelBroker(name)
}

// Raw ApiVersions v0 request: resolves to a Map apiKey -> [minVersion, maxVersion] that the broker
// advertises (used to decide whether tests of not-yet-built features can run).
export function apiVersions(host, port, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const clientId = Buffer.from('runnel-compat')
    const body = Buffer.alloc(10 + clientId.length)
    body.writeInt16BE(18, 0) // api key ApiVersions
    body.writeInt16BE(0, 2) // version 0
    body.writeInt32BE(7, 4) // correlation id
    body.writeInt16BE(clientId.length, 8)
    clientId.copy(body, 10)
    const size = Buffer.alloc(4)
    size.writeInt32BE(body.length)
    const sock = net.connect({ host, port })
    let buf = Buffer.alloc(0)
    sock.setTimeout(timeoutMs, () => {
      sock.destroy()
      reject(new Error(`ApiVersions to ${host}:${port}: no answer in ${timeoutMs} ms`))
    })
    sock.once('error', reject)
    sock.once('connect', () => sock.write(Buffer.concat([size, body])))
    sock.on('data', chunk => {
      buf = Buffer.concat([buf, chunk])
      if (buf.length < 4 || buf.length < 4 + buf.readInt32BE(0)) return
      sock.destroy()
      const errorCode = buf.readInt16BE(8)
      if (errorCode !== 0) return reject(new Error(`ApiVersions v0 error code ${errorCode}`))
      const n = buf.readInt32BE(10)
      const out = new Map()
      for (let i = 0, o = 14; i < n; i++, o += 6) out.set(buf.readInt16BE(o), [buf.readInt16BE(o + 2), buf.readInt16BE(o + 4)])
      resolve(out)
    })
  })
}
