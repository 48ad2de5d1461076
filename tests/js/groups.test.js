'use strict';
// KafkaJS producers, consumer groups and admin against Strata. Each test starts its own
// broker (harness.withBroker); run with `node --test tests/js/` (scripts/test.sh step js).

const assert = require('node:assert/strict');
const { test } = require('node:test');
const {
  withBroker, producer, createTopics, waitUntil, sleep, unique, committedOffsets, waitCommitted, endOffsets,
} = require('./harness');

const T = 60_000; // per wait: generous, bounded

/** Header values as strings; a repeated header key becomes an array, as KafkaJS gives it. */
function headerStrings(headers) {
  const out = {};
  for (const [k, v] of Object.entries(headers || {})) {
    out[k] = Array.isArray(v) ? v.map((b) => b.toString()) : v.toString();
  }
  return out;
}

/** Collects everything a group consumer's eachMessage sees, and its GROUP_JOIN events. */
function recorder(consumer) {
  const seen = [];
  const joins = [];
  const crashes = [];
  consumer.on(consumer.events.GROUP_JOIN, (e) => joins.push(e.payload));
  consumer.on(consumer.events.CRASH, (e) => crashes.push(e.payload));
  return { seen, joins, crashes };
}

/** The partitions of `topic` in a consumer's latest assignment (from GROUP_JOIN). */
function assigned(rec, topic) {
  const last = rec.joins[rec.joins.length - 1];
  return last ? [...(last.memberAssignment[topic] || [])].sort((a, b) => a - b) : [];
}

test('keyed sends with headers and sendBatch round-trip', { timeout: 120_000 }, withBroker(async (broker) => {
  const kafka = broker.kafka();
  const orders = unique('js-orders');
  const audit = unique('js-audit');
  await createTopics(kafka, [{ topic: orders, partitions: 3 }, { topic: audit, partitions: 2 }]);

  const p = producer(kafka, { allowAutoTopicCreation: false });
  await p.connect();
  // 60 keyed records, then 20 more keyed records and 10 unkeyed ones in one sendBatch
  const expected = new Map(); // "topic/seq" -> {key, value, headers}
  const mk = (topic, seq, key) => {
    const value = JSON.stringify({ seq, key, note: `record ${seq} of ${topic}` });
    const headers = { seq: String(seq), 'content-type': 'application/json', dup: ['first', `second-${seq}`] };
    expected.set(`${topic}/${seq}`, { key, value, headers: headerStrings(headers) });
    return { key, value, headers };
  };
  const sent = await p.send({
    topic: orders,
    acks: -1,
    messages: Array.from({ length: 60 }, (_, i) => mk(orders, i, `customer-${i % 8}`)),
  });
  assert.ok(sent.length >= 1 && sent.every((r) => r.errorCode === 0), JSON.stringify(sent));
  const batch = await p.sendBatch({
    acks: -1,
    topicMessages: [
      { topic: orders, messages: Array.from({ length: 20 }, (_, i) => mk(orders, 60 + i, `customer-${i % 8}`)) },
      { topic: audit, messages: Array.from({ length: 10 }, (_, i) => mk(audit, i, null)) },
    ],
  });
  assert.ok(batch.every((r) => r.errorCode === 0), JSON.stringify(batch));
  assert.deepEqual([...new Set(batch.map((r) => r.topicName))].sort(), [audit, orders].sort());
  await p.disconnect();

  const consumer = kafka.consumer({ groupId: unique('js-roundtrip'), sessionTimeout: 10_000, heartbeatInterval: 1000, maxWaitTimeInMs: 500 });
  const rec = recorder(consumer);
  await consumer.connect();
  await consumer.subscribe({ topics: [orders, audit], fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ topic, partition, message }) => {
      rec.seen.push({ topic, partition, offset: Number(message.offset), key: message.key && message.key.toString(), value: message.value.toString(), headers: headerStrings(message.headers) });
    },
  });
  try {
    await waitUntil(() => rec.seen.length >= 90, T, '90 records consumed');
    await sleep(500); // nothing more may come
  } finally {
    await consumer.disconnect();
  }
  assert.deepEqual(rec.crashes, []);
  assert.equal(rec.seen.length, 90, 'each record exactly once');

  const partitionsOfKey = new Map();
  const perTopicPartition = new Map();
  for (const r of rec.seen) {
    const seq = JSON.parse(r.value).seq;
    const want = expected.get(`${r.topic}/${seq}`);
    assert.ok(want, `unexpected record ${JSON.stringify(r)}`);
    assert.equal(r.key, want.key);
    assert.equal(r.value, want.value);
    assert.deepEqual(r.headers, want.headers);
    expected.delete(`${r.topic}/${seq}`);
    if (r.key !== null) {
      if (!partitionsOfKey.has(r.key)) partitionsOfKey.set(r.key, new Set());
      partitionsOfKey.get(r.key).add(r.partition);
    }
    const tp = `${r.topic}/${r.partition}`;
    if (!perTopicPartition.has(tp)) perTopicPartition.set(tp, []);
    perTopicPartition.get(tp).push(r);
  }
  assert.equal(expected.size, 0, `never consumed: ${[...expected.keys()]}`);
  for (const [key, parts] of partitionsOfKey) assert.equal(parts.size, 1, `${key} on partitions ${[...parts]}`);
  assert.ok(new Set([...partitionsOfKey.values()].map((s) => [...s][0])).size > 1, 'all keys on one partition');
  for (const [tp, recs] of perTopicPartition) {
    // dense offsets from 0, and per key the order sent is the order read
    assert.deepEqual(recs.map((r) => r.offset), recs.map((_, i) => i), `${tp} offsets`);
    const seqs = recs.map((r) => JSON.parse(r.value).seq);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), `${tp} out of send order`);
  }
}));

test('two eachMessage consumers split a group and see every record once', { timeout: 120_000 }, withBroker(async (broker) => {
  const kafka = broker.kafka();
  const topic = unique('js-each-message');
  const groupId = unique('js-em-group');
  await createTopics(kafka, [{ topic, partitions: 4 }]);

  const consumers = [];
  const recs = [];
  for (let i = 0; i < 2; i++) {
    const c = kafka.consumer({ groupId, sessionTimeout: 10_000, heartbeatInterval: 500, maxWaitTimeInMs: 200 });
    const rec = recorder(c);
    await c.connect();
    await c.subscribe({ topic, fromBeginning: true });
    await c.run({
      eachMessage: async ({ partition, message }) => {
        rec.seen.push({ partition, offset: Number(message.offset), value: message.value.toString() });
      },
    });
    consumers.push(c);
    recs.push(rec);
  }
  const admin = kafka.admin();
  await admin.connect();
  try {
    // stable: two members with two partitions each, together all four
    await waitUntil(() => {
      const a = assigned(recs[0], topic);
      const b = assigned(recs[1], topic);
      return a.length === 2 && b.length === 2 && new Set([...a, ...b]).size === 4;
    }, T, 'a 2+2 assignment', 100);
    const [a, b] = [assigned(recs[0], topic), assigned(recs[1], topic)];

    const p = producer(kafka);
    await p.connect();
    const values = Array.from({ length: 200 }, (_, i) => `event-${i}`);
    await p.send({ topic, acks: -1, messages: values.map((value, i) => ({ key: `k${i}`, value, partition: i % 4 })) });
    await p.disconnect();

    await waitUntil(() => recs[0].seen.length + recs[1].seen.length >= 200, T, '200 records consumed');
    const end = await endOffsets(admin, topic);
    assert.deepEqual(end, { 0: 50, 1: 50, 2: 50, 3: 50 });
    await waitCommitted(admin, groupId, topic, end);
    await sleep(500); // no late duplicates

    // each consumer read only its own partitions, every record exactly once
    for (const [rec, mine] of [[recs[0], a], [recs[1], b]]) {
      assert.ok(rec.seen.length > 0);
      for (const r of rec.seen) assert.ok(mine.includes(r.partition), `partition ${r.partition} not in ${mine}`);
    }
    const all = [...recs[0].seen, ...recs[1].seen];
    assert.deepEqual(all.map((r) => r.value).sort(), [...values].sort());
    assert.equal(new Set(all.map((r) => `${r.partition}/${r.offset}`)).size, 200);
    assert.deepEqual(recs.flatMap((r) => r.crashes), []);
  } finally {
    await admin.disconnect();
    for (const c of consumers) await c.disconnect();
  }
}));

test('eachBatch with resolveOffset and heartbeat commits exactly what was resolved', { timeout: 120_000 }, withBroker(async (broker) => {
  const kafka = broker.kafka();
  const topic = unique('js-each-batch');
  const groupId = unique('js-eb-group');
  const PER_PARTITION = 70;
  const HALF = { 0: 55, 1: 10 }; // the first consumer resolves up to here, then stops
  // partition 0's first batch takes 55 x 130 ms = 7.2 s, longer than the 6 s session
  // timeout: KafkaJS heartbeats only between fetches and in heartbeat(), so only
  // heartbeat() keeps the member in the group
  const SLOW_MS = 130;
  await createTopics(kafka, [{ topic, partitions: 2 }]);
  const p = producer(kafka);
  await p.connect();
  for (const partition of [0, 1]) {
    await p.send({ topic, acks: -1, messages: Array.from({ length: PER_PARTITION }, (_, i) => ({ partition, value: `p${partition}-${i}` })) });
  }
  await p.disconnect();

  const admin = kafka.admin();
  await admin.connect();
  try {
    // First member: resolves and heartbeats record by record, stops resolving at HALF
    const first = kafka.consumer({ groupId, sessionTimeout: 6000, heartbeatInterval: 500, rebalanceTimeout: 20_000 });
    const rec1 = recorder(first);
    const reached = new Set();
    let heartbeats = 0;
    await first.connect();
    await first.subscribe({ topic, fromBeginning: true });
    await first.run({
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, isRunning, isStale }) => {
        for (const message of batch.messages) {
          if (!isRunning() || isStale()) break;
          const offset = Number(message.offset);
          if (offset >= HALF[batch.partition]) {
            reached.add(batch.partition);
            break;
          }
          await sleep(SLOW_MS);
          assert.equal(message.value.toString(), `p${batch.partition}-${offset}`);
          rec1.seen.push({ partition: batch.partition, offset });
          resolveOffset(message.offset);
          await heartbeat();
          heartbeats += 1;
        }
        await commitOffsetsIfNecessary();
      },
    });
    try {
      await waitUntil(() => reached.size === 2, T, 'first consumer at HALF on both partitions');
      await waitCommitted(admin, groupId, topic, HALF);
    } finally {
      await first.disconnect();
    }
    assert.deepEqual(rec1.crashes, []);
    assert.equal(rec1.joins.length, 1, `the member rejoined (session expired despite heartbeat()?): ${JSON.stringify(rec1.joins)}`);
    for (const partition of [0, 1]) {
      const offsets = rec1.seen.filter((r) => r.partition === partition).map((r) => r.offset);
      assert.deepEqual(offsets, Array.from({ length: HALF[partition] }, (_, i) => i), `first consumer, partition ${partition}`);
    }
    assert.equal(heartbeats, HALF[0] + HALF[1]);

    // Second member of the same group resumes exactly after the resolved offsets
    const second = kafka.consumer({ groupId, sessionTimeout: 10_000, heartbeatInterval: 500, maxWaitTimeInMs: 500 });
    const rec2 = recorder(second);
    await second.connect();
    await second.subscribe({ topic, fromBeginning: true });
    await second.run({
      eachBatch: async ({ batch }) => {
        for (const message of batch.messages) rec2.seen.push({ partition: batch.partition, offset: Number(message.offset) });
      },
    });
    try {
      await waitUntil(() => rec2.seen.length >= 2 * PER_PARTITION - HALF[0] - HALF[1], T, 'the rest consumed');
      await waitCommitted(admin, groupId, topic, { 0: PER_PARTITION, 1: PER_PARTITION });
    } finally {
      await second.disconnect();
    }
    for (const partition of [0, 1]) {
      const offsets = rec2.seen.filter((r) => r.partition === partition).map((r) => r.offset);
      assert.deepEqual(offsets, Array.from({ length: PER_PARTITION - HALF[partition] }, (_, i) => HALF[partition] + i), `second consumer, partition ${partition}`);
    }
  } finally {
    await admin.disconnect();
  }
}));

/** Wraps an eachMessage handler: a record whose handler throws goes to `<topic>.dlq`
 *  with the error and its origin in headers, and consumption goes on. */
function withDeadLetters(dlqProducer, handler) {
  return async (payload) => {
    try {
      await handler(payload);
    } catch (err) {
      const { topic, partition, message } = payload;
      await dlqProducer.send({
        topic: `${topic}.dlq`,
        acks: -1,
        messages: [{
          key: message.key,
          value: message.value,
          headers: { ...message.headers, 'dlq-error': String(err.message), 'dlq-origin': `${topic}/${partition}/${message.offset}` },
        }],
      });
    }
  };
}

test('a failing handler sends records to the dead-letter topic and consumption continues', { timeout: 120_000 }, withBroker(async (broker) => {
  const kafka = broker.kafka();
  const topic = unique('js-payments');
  const dlq = `${topic}.dlq`;
  const groupId = unique('js-dlq-group');
  await createTopics(kafka, [{ topic, partitions: 3 }, { topic: dlq, partitions: 1 }]);

  // 60 payments; every 7th has a negative amount and two are not JSON at all
  const records = Array.from({ length: 60 }, (_, i) => ({
    key: `acct-${i % 5}`,
    partition: i % 3,
    value: i === 1 || i === 44 ? `corrupt{${i}` : JSON.stringify({ id: i, amount: i % 7 === 0 ? -i - 1 : i * 10 }),
    headers: { source: 'test' },
  }));
  const bad = new Set(records.flatMap((r, i) => (i === 1 || i === 44 || i % 7 === 0 ? [i] : [])));
  const p = producer(kafka);
  await p.connect();
  await p.send({ topic, acks: -1, messages: records });

  const processed = [];
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10_000, heartbeatInterval: 1000, maxWaitTimeInMs: 500 });
  const rec = recorder(consumer);
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: withDeadLetters(p, async ({ message }) => {
      const payment = JSON.parse(message.value.toString()); // throws on the corrupt ones
      if (payment.amount < 0) throw new Error(`negative amount in payment ${payment.id}`);
      processed.push(payment.id);
    }),
  });

  const admin = kafka.admin();
  await admin.connect();
  const dlqSeen = [];
  const dlqConsumer = kafka.consumer({ groupId: unique('js-dlq-reader'), sessionTimeout: 10_000, heartbeatInterval: 1000, maxWaitTimeInMs: 500 });
  try {
    await waitUntil(() => processed.length >= 60 - bad.size, T, 'good payments processed');
    const end = await endOffsets(admin, topic);
    await waitCommitted(admin, groupId, topic, end); // past every failed record

    await dlqConsumer.connect();
    await dlqConsumer.subscribe({ topic: dlq, fromBeginning: true });
    await dlqConsumer.run({
      eachMessage: async ({ message }) => {
        dlqSeen.push({ key: message.key.toString(), value: message.value.toString(), headers: headerStrings(message.headers) });
      },
    });
    await waitUntil(() => dlqSeen.length >= bad.size, T, `${bad.size} dead letters`);
    await sleep(500);
  } finally {
    await dlqConsumer.disconnect();
    await consumer.disconnect();
    await admin.disconnect();
    await p.disconnect();
  }

  assert.deepEqual(rec.crashes, []);
  assert.deepEqual([...processed].sort((a, b) => a - b), records.map((_, i) => i).filter((i) => !bad.has(i)));
  assert.equal(dlqSeen.length, bad.size, 'each failed record dead-lettered once');
  const origins = new Set();
  for (const d of dlqSeen) {
    const i = records.findIndex((r) => r.value === d.value);
    assert.ok(bad.has(i), `record ${i} dead-lettered but its handler succeeded`);
    assert.equal(d.key, records[i].key);
    assert.equal(d.headers.source, 'test');
    assert.match(d.headers['dlq-error'], i === 1 || i === 44 ? /JSON|Unexpected token/ : new RegExp(`negative amount in payment ${i}$`));
    assert.match(d.headers['dlq-origin'], new RegExp(`^${topic}/[0-2]/\\d+$`));
    origins.add(d.headers['dlq-origin']);
  }
  assert.equal(origins.size, bad.size);
}));

test('admin listGroups, describeGroups, fetchOffsets, setOffsets and deleteGroups', { timeout: 120_000 }, withBroker(async (broker) => {
  const kafka = broker.kafka();
  const topic = unique('js-admin');
  const active = unique('js-active-group');
  const parked = unique('js-parked-group');
  await createTopics(kafka, [{ topic, partitions: 3 }]);
  const p = producer(kafka);
  await p.connect();
  const counts = { 0: 10, 1: 4, 2: 7 };
  for (const [partition, n] of Object.entries(counts)) {
    await p.send({ topic, acks: -1, messages: Array.from({ length: n }, (_, i) => ({ partition: Number(partition), value: `v${i}` })) });
  }
  await p.disconnect();

  const admin = kafka.admin();
  await admin.connect();
  const consumer = kafka.consumer({ groupId: active, sessionTimeout: 10_000, heartbeatInterval: 500, maxWaitTimeInMs: 500 });
  try {
    let consumed = 0;
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({ eachMessage: async () => { consumed += 1; } });
    await waitUntil(() => consumed >= 21, T, '21 records consumed');
    await waitCommitted(admin, active, topic, counts);

    // a group with committed offsets and no members, set through the admin API
    await admin.setOffsets({ groupId: parked, topic, partitions: [{ partition: 0, offset: '3' }, { partition: 2, offset: '6' }] });
    assert.deepEqual(await committedOffsets(admin, parked, topic), { 0: 3, 1: -1, 2: 6 });

    const { groups } = await admin.listGroups();
    const byId = Object.fromEntries(groups.map((g) => [g.groupId, g]));
    assert.equal(byId[active] && byId[active].protocolType, 'consumer', JSON.stringify(groups));
    assert.ok(byId[parked], `${parked} (offsets only) not listed: ${JSON.stringify(groups)}`);

    const described = await admin.describeGroups([active]);
    const [g] = described.groups;
    assert.equal(g.groupId, active);
    assert.equal(g.errorCode, 0);
    assert.equal(g.state, 'Stable');
    assert.equal(g.protocolType, 'consumer');
    assert.equal(g.members.length, 1);
    assert.equal(g.members[0].clientId, 'strata-e2e-kafkajs');

    // the active group keeps its offsets once its member is gone
    await consumer.disconnect();
    assert.deepEqual(await committedOffsets(admin, active, topic), { 0: 10, 1: 4, 2: 7 });
    const [after] = (await admin.describeGroups([active])).groups;
    assert.equal(after.state, 'Empty');
    assert.equal(after.members.length, 0);

    // deleting a group removes it and its offsets
    await admin.deleteGroups([parked]);
    const listed = (await admin.listGroups()).groups.map((x) => x.groupId);
    assert.ok(!listed.includes(parked), `${parked} still listed: ${listed}`);
    assert.ok(listed.includes(active), `${active} no longer listed: ${listed}`);
    assert.deepEqual(await committedOffsets(admin, parked, topic), { 0: -1, 1: -1, 2: -1 });
  } finally {
    await consumer.disconnect();
    await admin.disconnect();
  }
}));
