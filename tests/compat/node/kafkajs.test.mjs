// KafkaJS 2.2.4 against Runnel (node:test). Run: node --test tests/compat/node/
//
// KafkaJS's only consumer API is the group consumer (`kafka.consumer({ groupId })`, groupId is
// mandatory: FindCoordinator/JoinGroup/SyncGroup/Heartbeat/OffsetFetch/OffsetCommit). The group
// consumer test runs when the broker advertises those APIs (ApiVersions) and is skipped, naming
// the missing group APIs, while it does not. The other tests read records back through KafkaJS's
// own lower layer instead: its Cluster and Broker objects send a real Fetch (v11 at most) and
// decode the record batches with KafkaJS's decoder -- the code its consumer uses below the group
// logic.

import assert from 'node:assert/strict'
import fs from 'node:fs'
import { after, before, describe, test } from 'node:test'
import { createRequire } from 'node:module'

import { apiVersions, makeBroker, withBrokerLog } from './broker.mjs'

const require = createRequire(import.meta.url)
const { Kafka, logLevel, CompressionTypes, ConfigResourceTypes, Partitioners } = require('kafkajs')

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'

// API keys the KafkaJS group consumer needs.
const GROUP_APIS = { FindCoordinator: 10, JoinGroup: 11, Heartbeat: 12, LeaveGroup: 13, SyncGroup: 14, OffsetCommit: 8, OffsetFetch: 9 }

let broker
let kafka
let admin
let seq = 0
const uniqueTopic = name => `kafkajs-${name}-${process.pid}-${Date.now().toString(36)}-${seq++}`

before(async () => {
  broker = await makeBroker("kafkajs-broker").start()
  kafka = new Kafka({
    clientId: 'runnel-compat-kafkajs',
    brokers: [broker.bootstrap],
    logLevel: logLevel.ERROR,
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
      if (exit && (exit.code !== 0 || exit.note)) {
        console.log(`[runnel compat] KafkaJS broker exit after SIGTERM: ${JSON.stringify(exit)}`)
      }
      await broker.cleanup()
    }
  }
})

// Known broker gaps (../known_gaps.txt, entries "kafkajs:<full test name> | reason"): such a test
// still runs; failing, it is marked TODO (does not fail the run); passing, it fails the run so
// that its entry gets deleted. RUNNEL_COMPAT_IGNORE_KNOWN_GAPS=1 runs them as normal tests.
const KNOWN_GAPS = new Map(
  process.env.RUNNEL_COMPAT_IGNORE_KNOWN_GAPS === '1'
    ? []
    : fs.readFileSync(new URL('../known_gaps.txt', import.meta.url), 'utf8')
      .split('\n')
      .map(l => l.trim())
      .filter(l => l.startsWith('kafkajs:'))
      .map(l => {
        const i = l.indexOf('|')
        return i < 0 ? [l.slice(8).trim(), 'known broker gap'] : [l.slice(8, i).trim(), l.slice(i + 1).trim()]
      })
)
const SUITE = 'KafkaJS 2.2.4'

function bt(name, opts, fn) {
  if (typeof opts === 'function') {
    fn = opts
    opts = {}
  }
  const gap = KNOWN_GAPS.get(`${SUITE} ${name}`)
  return test(name, { timeout: 90_000, ...opts }, async t => {
    if (!gap) return withBrokerLog(broker, () => fn(t))
    try {
      await withBrokerLog(broker, () => fn(t))
    } catch (e) {
      t.todo(`known gap (tests/compat/known_gaps.txt): ${gap}`)
      throw e
    }
    throw new Error(`known gap now passes: delete its line from tests/compat/known_gaps.txt (${gap})`)
  })
}

async function createTopic(topic, numPartitions) {
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions, replicationFactor: 1 }],
    waitForLeaders: true,
    timeout: 15000,
  })
  assert.equal(created, true, `createTopics(${topic}) returned ${created}`)
}

// Reads every partition of `topic` from offset 0 up to its high watermark (as reported by
// admin.fetchTopicOffsets) with KafkaJS's lower-level Fetch.
async function fetchAll(topic, { deadlineMs = 60_000 } = {}) {
  const offsets = await admin.fetchTopicOffsets(topic)
  const high = Object.fromEntries(offsets.map(o => [o.partition, Number(o.high)]))
  const createCluster = Object.getOwnPropertySymbols(kafka).find(
    s => s.description === 'private:Kafka:createCluster'
  )
  assert.ok(createCluster, 'KafkaJS internals changed: no private createCluster on the Kafka client')
  const cluster = kafka[createCluster]({ allowAutoTopicCreation: false })
  await cluster.connect()
  const records = []
  try {
    await cluster.addTargetTopic(topic)
    const next = Object.fromEntries(Object.keys(high).map(p => [p, 0]))
    const leaders = cluster.findLeaderForPartitions(topic, Object.keys(high).map(Number))
    const deadline = Date.now() + deadlineMs
    while (Object.keys(next).some(p => next[p] < high[p])) {
      assert.ok(Date.now() < deadline, `fetchAll(${topic}) timed out at ${JSON.stringify(next)} of ${JSON.stringify(high)}`)
      for (const [nodeId, parts] of Object.entries(leaders)) {
        const b = await cluster.findBroker({ nodeId })
        const wanted = parts.filter(p => next[p] < high[p])
        if (wanted.length === 0) continue
        const resp = await b.fetch({
          replicaId: -1,
          isolationLevel: 1,
          maxWaitTime: 200,
          minBytes: 1,
          maxBytes: 10 * 1024 * 1024,
          topics: [{ topic, partitions: wanted.map(p => ({ partition: p, fetchOffset: String(next[p]), maxBytes: 1024 * 1024 })) }],
        })
        assert.equal(resp.errorCode ?? 0, 0, `Fetch error ${resp.errorCode}`)
        for (const tr of resp.responses) {
          assert.equal(tr.topicName, topic)
          for (const pr of tr.partitions) {
            assert.equal(pr.errorCode, 0, `Fetch ${topic}/${pr.partition}: error code ${pr.errorCode}`)
            for (const m of pr.messages) {
              const off = Number(m.offset)
              // A fetch offset inside a batch returns the whole batch: skip what was already read.
              if (off < next[pr.partition]) continue
              assert.equal(off, next[pr.partition], `partition ${pr.partition}: expected offset ${next[pr.partition]}, got ${off}`)
              records.push({ partition: pr.partition, offset: off, key: m.key, value: m.value, headers: m.headers })
              next[pr.partition] = off + 1
            }
          }
        }
      }
    }
  } finally {
    await cluster.disconnect()
  }
  return records
}

const str = b => (b === null || b === undefined ? b : b.toString())
const headersToObject = h => Object.fromEntries(Object.entries(h || {}).map(([k, v]) => [k, Array.isArray(v) ? v.map(str) : str(v)]))

describe(SUITE, () => {
  bt('admin.createTopics creates a 3-partition topic visible in metadata and listTopics', async () => {
    const topic = uniqueTopic('create')
    await createTopic(topic, 3)
    const md = await admin.fetchTopicMetadata({ topics: [topic] })
    assert.equal(md.topics.length, 1)
    const parts = md.topics[0].partitions.sort((a, b) => a.partitionId - b.partitionId)
    assert.deepEqual(parts.map(p => p.partitionId), [0, 1, 2])
    for (const p of parts) {
      assert.equal(p.partitionErrorCode, 0)
      assert.equal(p.leader, 1)
      assert.deepEqual(p.replicas, [1])
    }
    assert.ok((await admin.listTopics()).includes(topic))

    // KafkaJS resolves createTopics to false when the topic already exists (TOPIC_ALREADY_EXISTS).
    assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], timeout: 15000 }), false)
  })

  bt('admin.describeCluster reports the single node', async () => {
    const c = await admin.describeCluster()
    assert.deepEqual(c.brokers.map(b => [b.nodeId, b.host, b.port]), [[1, broker.host, broker.port]])
    assert.equal(c.controller, 1)
    assert.ok(c.clusterId, 'no cluster id')
  })

  bt('producer.send with headers (acks=-1, idempotent=false); fetchTopicOffsets and Fetch read them back', async () => {
    const topic = uniqueTopic('headers')
    await createTopic(topic, 3)
    const producer = kafka.producer({ idempotent: false, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner })
    await producer.connect()
    const messages = []
    for (let i = 0; i < 300; i++) {
      messages.push({
        key: `key-${i % 10}`,
        value: `value-${i}`,
        headers: { seq: String(i), source: 'kafkajs', dup: ['a', 'b'] },
      })
    }
    let meta
    try {
      meta = await producer.send({ topic, acks: -1, messages })
    } finally {
      await producer.disconnect()
    }
    for (const m of meta) assert.equal(m.errorCode, 0, JSON.stringify(m))

    const offsets = await admin.fetchTopicOffsets(topic)
    assert.equal(offsets.reduce((n, o) => n + Number(o.high), 0), 300, JSON.stringify(offsets))
    for (const o of offsets) assert.equal(Number(o.low), 0)

    const records = await fetchAll(topic)
    assert.equal(records.length, 300)
    const keyPartition = new Map()
    const perKey = new Map()
    for (const r of records.sort((a, b) => a.partition - b.partition || a.offset - b.offset)) {
      const key = str(r.key)
      const value = str(r.value)
      const i = Number(value.split('-')[1])
      assert.deepEqual(headersToObject(r.headers), { seq: String(i), source: 'kafkajs', dup: ['a', 'b'] })
      assert.equal(key, `key-${i % 10}`)
      if (keyPartition.has(key)) assert.equal(keyPartition.get(key), r.partition, `${key} in two partitions`)
      keyPartition.set(key, r.partition)
      perKey.set(key, [...(perKey.get(key) ?? []), i])
    }
    for (const [key, seqs] of perKey) assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), `${key}: order not kept`)
  })

  bt('gzip-compressed send round trip (auto-created topic, null key)', async () => {
    const topic = uniqueTopic('gzip')
    const producer = kafka.producer({ idempotent: false, allowAutoTopicCreation: true })
    await producer.connect()
    try {
      const res = await producer.send({
        topic,
        acks: 1,
        compression: CompressionTypes.GZIP,
        messages: Array.from({ length: 100 }, (_, i) => ({ key: null, value: `gz-${i}`, partition: 0 })),
      })
      assert.equal(res[0].errorCode, 0)
    } finally {
      await producer.disconnect()
    }
    const records = await fetchAll(topic)
    assert.deepEqual(records.map(r => [r.offset, r.key, str(r.value)]), Array.from({ length: 100 }, (_, i) => [i, null, `gz-${i}`]))
  })

  bt('admin.fetchTopicOffsetsByTimestamp finds the first record at or after a time (inside one batch)', async () => {
    const topic = uniqueTopic('bytime')
    await createTopic(topic, 1)
    const producer = kafka.producer({ idempotent: false })
    await producer.connect()
    const base = Date.now() - 100_000
    try {
      await producer.send({
        topic,
        acks: -1,
        messages: Array.from({ length: 5 }, (_, i) => ({ value: `t${i}`, timestamp: String(base + i * 1000) })),
      })
    } finally {
      await producer.disconnect()
    }
    const found = await admin.fetchTopicOffsetsByTimestamp(topic, base + 2500)
    assert.deepEqual(found.map(o => [o.partition, Number(o.offset)]), [[0, 3]])
  })

  bt('admin.describeConfigs returns topic configs', async () => {
    const topic = uniqueTopic('configs')
    await admin.createTopics({
      topics: [{ topic, numPartitions: 1, replicationFactor: 1, configEntries: [{ name: 'retention.ms', value: '7200000' }] }],
      waitForLeaders: true,
    })
    const res = await admin.describeConfigs({ resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }], includeSynonyms: false })
    const entries = Object.fromEntries(res.resources[0].configEntries.map(e => [e.configName, e]))
    assert.equal(res.resources[0].errorCode, 0)
    assert.equal(entries['retention.ms']?.configValue, '7200000')
    assert.equal(entries['cleanup.policy']?.configValue, 'delete')
  })

  bt('admin.deleteTopics removes the topic', async () => {
    const topic = uniqueTopic('delete')
    await createTopic(topic, 1)
    await admin.deleteTopics({ topics: [topic], timeout: 15000 })
    const deadline = Date.now() + 30_000
    while ((await admin.listTopics()).includes(topic)) {
      assert.ok(Date.now() < deadline, `${topic} still listed 30 s after deleteTopics`)
      await new Promise(r => setTimeout(r, 200))
    }
  })

  bt('consumer (group) reads produced records with headers', async t => {
    const advertised = await apiVersions(broker.host, broker.port)
    const missing = Object.entries(GROUP_APIS).filter(([, key]) => !advertised.has(key)).map(([name]) => name)
    if (missing.length > 0) {
      t.skip(`KafkaJS can only consume through a consumer group (groupId is mandatory); the broker does not advertise ${missing.join(', ')} yet`)
      return
    }
    const topic = uniqueTopic('consumer')
    await createTopic(topic, 2)
    const producer = kafka.producer({ idempotent: false })
    await producer.connect()
    try {
      await producer.send({ topic, acks: -1, messages: Array.from({ length: 20 }, (_, i) => ({ key: `k${i}`, value: `v${i}`, headers: { i: String(i) } })) })
    } finally {
      await producer.disconnect()
    }
    const consumer = kafka.consumer({ groupId: `${topic}-group`, sessionTimeout: 10000, heartbeatInterval: 1000 })
    await consumer.connect()
    const got = []
    try {
      await consumer.subscribe({ topics: [topic], fromBeginning: true })
      await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`consumer read ${got.length} of 20 records in 60 s`)), 60_000)
        consumer.run({
          eachMessage: async ({ message }) => {
            got.push({ key: str(message.key), value: str(message.value), headers: headersToObject(message.headers) })
            if (got.length === 20) {
              clearTimeout(timer)
              resolve()
            }
          },
        }).catch(reject)
      })
    } finally {
      await consumer.disconnect()
    }
    assert.deepEqual(
      got.sort((a, b) => Number(a.key.slice(1)) - Number(b.key.slice(1))),
      Array.from({ length: 20 }, (_, i) => ({ key: `k${i}`, value: `v${i}`, headers: { i: String(i) } }))
    )
  })
})
