// KafkaJS 2.2.4 consumer groups against Runnel (issue 3, "Done when" 4). Run:
//   node --test tests/compat/node/groups.test.mjs
//
// KafkaJS uses the classic group protocol (FindCoordinator, JoinGroup v5, SyncGroup, Heartbeat,
// OffsetCommit v5, OffsetFetch, LeaveGroup). Two consumers of one group share a topic's partitions
// (GROUP_JOIN events and admin.describeGroups show the split), read everything, commit after each
// batch (KafkaJS's default), and admin.fetchOffsets shows the committed offsets; a later member of
// the group resumes from them. The broker is started with group.initial.rebalance.delay.ms=0 so
// that the group forms at once.

import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import { after, before, describe, test } from 'node:test'
import { createRequire } from 'node:module'

import { ExternalBroker, RunnelBroker, freePort, runnelBinary, withBrokerLog } from './broker.mjs'

const require = createRequire(import.meta.url)
const { Kafka, logLevel, AssignerProtocol } = require('kafkajs')

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'

const OVERRIDES = { 'group.initial.rebalance.delay.ms': '0' }
const SESSION_MS = 6000
const HEARTBEAT_MS = 1000

const sleep = ms => new Promise(r => setTimeout(r, ms))

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

// broker.mjs's RunnelBroker with `--override` settings (its start() passes none). Same process
// handling: free port, deadline-bounded wait for the listener, stop()/logText() inherited.
class GroupsBroker extends RunnelBroker {
  constructor(name, overrides) {
    super(name)
    this.overrides = overrides
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
        await this.spawnAndWait(bin)
        return this
      } catch (e) {
        lastErr = e
        if (this.alive()) this.child.kill('SIGKILL')
      }
    }
    throw lastErr
  }

  async spawnAndWait(bin) {
    const args = ['serve', '--data-dir', this.dataDir, '--listen', this.bootstrap]
    for (const [k, v] of Object.entries(this.overrides)) args.push('--override', `${k}=${v}`)
    fs.appendFileSync(this.logPath, `\n===== start: ${bin} ${args.join(' ')}\n`)
    const fd = fs.openSync(this.logPath, 'a')
    this.exit = null
    this.child = spawn(bin, args, { cwd: this.workdir, stdio: ['ignore', fd, fd], env: { RUST_BACKTRACE: '1', ...process.env } })
    fs.closeSync(fd)
    this.exited = new Promise(resolve => {
      this.child.once('exit', (code, signal) => {
        this.exit = { code, signal }
        resolve(this.exit)
      })
    })
    const deadline = Date.now() + Number(process.env.RUNNEL_COMPAT_START_DEADLINE ?? 60) * 1000
    for (;;) {
      if (this.exit) throw new Error(`${this.name}: runnel exited (${JSON.stringify(this.exit)}) before accepting connections\n${this.logText()}`)
      if (await accepts(this.host, this.port)) return
      if (Date.now() > deadline) throw new Error(`${this.name}: not accepting on ${this.bootstrap}\n${this.logText()}`)
      await sleep(50)
    }
  }
}

let broker
let kafka
let admin
let seq = 0
const uniqueTopic = name => `kafkajs-groups-${name}-${process.pid}-${Date.now().toString(36)}-${seq++}`

before(async () => {
  const ext = process.env.RUNNEL_COMPAT_BOOTSTRAP
  broker = await (ext ? new ExternalBroker(ext) : new GroupsBroker('kafkajs-groups-broker', OVERRIDES)).start()
  kafka = new Kafka({
    clientId: 'runnel-compat-kafkajs-groups',
    brokers: [broker.bootstrap],
    logLevel: logLevel.ERROR,
    // KafkaJS logs every REBALANCE_IN_PROGRESS heartbeat answer as an ERROR, although it is how a
    // member learns to rejoin: drop those lines, keep the rest.
    logCreator: () => ({ namespace, level, log }) => {
      if (level > logLevel.ERROR || /rebalancing, so a rejoin is needed/.test(log.error ?? '')) return
      console.error(JSON.stringify({ namespace, ...log }))
    },
    connectionTimeout: 3000,
    requestTimeout: 30000,
    retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2000 },
  })
  admin = kafka.admin()
  await admin.connect()
})

after(async () => {
  try {
    if (admin) await admin.disconnect()
  } finally {
    if (broker) {
      const exit = await broker.stop()
      if (exit && (exit.code !== 0 || exit.note)) console.log(`[runnel compat] KafkaJS groups broker exit after SIGTERM: ${JSON.stringify(exit)}`)
      await broker.cleanup()
    }
  }
})

// Polls `check` (sync or async) until it returns a truthy value; fails with describe() at the deadline.
async function waitFor(check, deadlineMs, describe) {
  const deadline = Date.now() + deadlineMs
  for (;;) {
    const v = await check()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${deadlineMs} ms waiting for ${describe()}`)
    await sleep(100)
  }
}

async function produce(topic, partitions, values) {
  const producer = kafka.producer({ idempotent: false })
  await producer.connect()
  try {
    await producer.send({ topic, acks: -1, messages: values.map((value, i) => ({ value, partition: i % partitions })) })
  } finally {
    await producer.disconnect()
  }
}

function groupConsumer(groupId) {
  return kafka.consumer({ groupId, sessionTimeout: SESSION_MS, heartbeatInterval: HEARTBEAT_MS, rebalanceTimeout: 20000, maxWaitTimeInMs: 100 })
}

// Starts consumer `c` (subscribed from the beginning); records go to `into`, GROUP_JOIN
// assignments to `member.assignment`.
async function startMember(c, topic, into, member) {
  member.assignment = new Set()
  member.joins = 0
  c.on(c.events.GROUP_JOIN, e => {
    member.joins++
    member.assignment = new Set(e.payload.memberAssignment[topic] ?? [])
  })
  c.on(c.events.CRASH, e => {
    member.crash = e.payload.error
  })
  await c.connect()
  await c.subscribe({ topics: [topic], fromBeginning: true })
  await c.run({
    eachMessage: async ({ partition, message }) => {
      into.push({ partition, offset: Number(message.offset), value: message.value.toString() })
    },
  })
}

const splitOk = (assignments, partitions) =>
  assignments.every(a => a.size > 0) &&
  assignments.reduce((n, a) => n + a.size, 0) === partitions &&
  new Set(assignments.flatMap(a => [...a])).size === partitions

function gt(name, fn) {
  return test(name, { timeout: 90_000 }, () => withBrokerLog(broker, fn))
}

describe('KafkaJS 2.2.4 consumer groups', () => {
  gt('two members share the partitions, consume everything, commit; a later member resumes from the commits', async () => {
    const P = 4
    const topic = uniqueTopic('share')
    const groupId = `${topic}-group`
    assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions: P, replicationFactor: 1 }], waitForLeaders: true, timeout: 15000 }), true)
    const first = Array.from({ length: 20 }, (_, i) => `a${i}`)
    await produce(topic, P, first)

    const members = [{}, {}]
    const got = [[], []]
    const consumers = [groupConsumer(groupId), groupConsumer(groupId)]
    try {
      await startMember(consumers[0], topic, got[0], members[0])
      await startMember(consumers[1], topic, got[1], members[1])
      const state = () => JSON.stringify(members.map((m, i) => ({ assignment: [...(m.assignment ?? [])], joins: m.joins, read: got[i].length, crash: String(m.crash ?? '') })))

      // The group forms with both members: each owns a disjoint, non-empty share of the partitions.
      await waitFor(() => splitOk(members.map(m => m.assignment), P), 45_000, () => `two members sharing ${P} partitions: ${state()}`)
      // Everything produced before is read (by one member or the other) ...
      await waitFor(() => new Set([...got[0], ...got[1]].map(r => r.value)).size === first.length, 30_000,
        () => `all ${first.length} records to be read: ${state()}`)
      // ... and records produced now are read by the member that owns their partition.
      const second = Array.from({ length: 20 }, (_, i) => `b${i}`)
      await produce(topic, P, second)
      await waitFor(() => second.every(v => got.some(g => g.some(r => r.value === v))), 30_000, () => `the new records to be read: ${state()}`)
      for (const i of [0, 1]) {
        const mine = got[i].filter(r => r.value.startsWith('b'))
        assert.ok(mine.length > 0, `member ${i} read none of the new records: ${state()}`)
        for (const r of mine) assert.ok(members[i].assignment.has(r.partition), `member ${i} read partition ${r.partition} it does not own: ${state()}`)
      }

      // KafkaJS commits after each batch: every partition's committed offset reaches its end (10).
      await waitFor(async () => {
        const [t] = await admin.fetchOffsets({ groupId, topics: [topic] })
        return t.partitions.length === P && t.partitions.every(p => p.offset === '10')
      }, 20_000, () => `committed offsets of ${groupId} to reach 10 on every partition`)

      // describeGroups shows both members and their assignments.
      const { groups: [g] } = await admin.describeGroups([groupId])
      assert.equal(g.errorCode, 0)
      assert.equal(g.state, 'Stable')
      assert.equal(g.protocolType, 'consumer')
      assert.equal(g.members.length, 2)
      const described = g.members.map(m => new Set(AssignerProtocol.MemberAssignment.decode(m.memberAssignment).assignment[topic] ?? []))
      assert.ok(splitOk(described, P), `describeGroups assignments: ${JSON.stringify(described.map(s => [...s]))}`)
    } finally {
      for (const c of consumers) await c.disconnect()
    }

    await waitFor(async () => (await admin.describeGroups([groupId])).groups[0].state === 'Empty', 20_000,
      () => `${groupId} to be Empty after both members left`)

    // A new member of the group starts from the committed offsets: only records produced since.
    const third = Array.from({ length: 8 }, (_, i) => `c${i}`)
    await produce(topic, P, third)
    const got3 = []
    const m3 = {}
    const c3 = groupConsumer(groupId)
    try {
      await startMember(c3, topic, got3, m3)
      await waitFor(() => got3.length >= third.length, 30_000, () => `the new member to read the ${third.length} new records: ${JSON.stringify(got3)}`)
      assert.deepEqual(got3.map(r => r.value).sort(), [...third].sort(), `re-delivered committed records: ${JSON.stringify(got3)}`)
      for (const r of got3) assert.equal(r.offset >= 10, true, `re-delivered ${JSON.stringify(r)}`)
      await waitFor(async () => {
        const [t] = await admin.fetchOffsets({ groupId, topics: [topic] })
        return t.partitions.every(p => p.offset === '12')
      }, 20_000, () => `committed offsets of ${groupId} to reach 12`)
    } finally {
      await c3.disconnect()
    }
  })
})
