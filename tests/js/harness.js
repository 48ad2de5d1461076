'use strict';
// One `strata serve` process per test on a free 127.0.0.1 port with a temporary data
// dir, and small helpers over KafkaJS. The binary is $STRATA_BIN or the repo's
// target/release/strata.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { Kafka, logLevel, Partitioners } = require('kafkajs');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const READY_TIMEOUT_MS = 60_000;

function strataBinary() {
  return process.env.STRATA_BIN || path.join(REPO_ROOT, 'target', 'release', 'strata');
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function portOpen(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.setTimeout(500);
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('timeout', () => { socket.destroy(); resolve(false); });
    socket.once('error', () => { socket.destroy(); resolve(false); });
  });
}

// Brokers still running when this process exits (a test timed out, the runner was
// interrupted) are killed rather than left behind.
const running = new Set();
process.on('exit', () => {
  for (const proc of running) proc.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => process.exit(128 + (signal === 'SIGINT' ? 2 : 15)));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Strata {
  constructor({ name = 'strata', extraArgs = [] } = {}) {
    this.name = name;
    this.extraArgs = extraArgs;
    this.workdir = fs.mkdtempSync(path.join(os.tmpdir(), `strata-js-${name}-`));
    this.dataDir = path.join(this.workdir, 'data');
    this.logPath = path.join(this.workdir, 'strata.log');
    this.proc = null;
    this.exited = null;
  }

  async start() {
    const bin = strataBinary();
    if (!fs.existsSync(bin)) {
      throw new Error(`strata binary not found at ${bin}: run \`cargo build --release\` or set STRATA_BIN`);
    }
    this.port = await freePort();
    this.bootstrap = `127.0.0.1:${this.port}`;
    const args = ['serve', '--listen', this.bootstrap, '--data-dir', this.dataDir,
      '--wal-flush-ms', '5', ...this.extraArgs];
    const env = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (!k.startsWith('AWS_') && !k.startsWith('STRATA_')) env[k] = v;
    }
    env.RUST_LOG = process.env.STRATA_TEST_RUST_LOG || 'info';
    env.NO_COLOR = '1';
    const log = fs.openSync(this.logPath, 'a');
    fs.writeSync(log, `===== ${bin} ${args.join(' ')}\n`);
    this.proc = spawn(bin, args, { env, cwd: this.workdir, stdio: ['ignore', log, log] });
    fs.closeSync(log);
    const proc = this.proc;
    running.add(proc);
    proc.once('exit', (code, signal) => { this.exited = { code, signal }; running.delete(proc); });
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (this.exited) {
        throw new Error(`strata exited (${JSON.stringify(this.exited)}) before listening; log:\n${this.logTail()}`);
      }
      if (await portOpen(this.port)) return this;
      await sleep(50);
    }
    this.proc.kill('SIGKILL');
    throw new Error(`strata did not listen on ${this.port} within ${READY_TIMEOUT_MS} ms; log:\n${this.logTail()}`);
  }

  alive() {
    return this.proc !== null && this.exited === null;
  }

  /** SIGTERM (a clean shutdown), SIGKILL after 20 s. Resolves to the exit status. */
  async stop() {
    if (!this.proc) return null;
    if (this.exited) return this.exited;
    const done = new Promise((resolve) => this.proc.once('exit', (code, signal) => resolve({ code, signal })));
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 20_000);
    const status = await done;
    clearTimeout(timer);
    return status;
  }

  logTail(lines = 120) {
    try {
      return fs.readFileSync(this.logPath, 'utf8').split('\n').slice(-lines).join('\n');
    } catch (e) {
      return `(cannot read ${this.logPath}: ${e})`;
    }
  }

  kafka(clientId = 'strata-e2e-kafkajs') {
    return new Kafka({
      clientId,
      brokers: [this.bootstrap],
      logLevel: logLevel.WARN,
      retry: { retries: 8, initialRetryTime: 100, maxRetryTime: 2000 },
      connectionTimeout: 5000,
      requestTimeout: 30000,
    });
  }
}

/**
 * A test body with its own broker: fn(broker) runs against a started broker, which is
 * stopped afterwards (it must exit 0 on SIGTERM); when the body fails, the broker's log
 * tail goes to stderr and its work dir is kept.
 * Rebalances are quick (200 ms initial delay) unless extraArgs say otherwise.
 */
function withBroker(fn, { extraArgs = ['--group-initial-rebalance-delay-ms', '200'], name = 'strata' } = {}) {
  return async (t) => {
    const broker = new Strata({ name, extraArgs });
    let passed = false;
    try {
      await broker.start();
      await fn(broker, t);
      if (!broker.alive()) throw new Error(`broker died during the test: ${JSON.stringify(broker.exited)}`);
      passed = true;
    } catch (err) {
      process.stderr.write(`\n----- ${t.name} failed (broker alive: ${broker.alive()}); tail of ${broker.logPath} -----\n${broker.logTail()}\n`);
      throw err;
    } finally {
      const status = await broker.stop();
      if (passed && status && status.code !== 0) {
        throw new Error(`strata exited with ${JSON.stringify(status)} on SIGTERM; log:\n${broker.logTail()}`);
      }
      if (passed) fs.rmSync(broker.workdir, { recursive: true, force: true });
    }
  };
}

function producer(kafka, opts = {}) {
  return kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, ...opts });
}

async function createTopics(kafka, topics) {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const created = await admin.createTopics({
      waitForLeaders: true,
      timeout: 30000,
      topics: topics.map(({ topic, partitions }) => ({ topic, numPartitions: partitions, replicationFactor: 1 })),
    });
    if (!created) throw new Error(`createTopics ${topics.map((t) => t.topic)} reported nothing created`);
  } finally {
    await admin.disconnect();
  }
}

/** Polls check() until it returns a truthy value; throws after timeoutMs. */
async function waitUntil(check, timeoutMs, what = 'condition', intervalMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last) return last;
    await sleep(intervalMs);
  }
  throw new Error(`${what} not reached within ${timeoutMs} ms (last: ${JSON.stringify(last)})`);
}

function unique(name) {
  return `${name}-${Math.random().toString(16).slice(2, 10)}`;
}

/** Committed offsets of a group on a topic as {partition: offset}. */
async function committedOffsets(admin, groupId, topic) {
  const [entry] = await admin.fetchOffsets({ groupId, topics: [topic] });
  const out = {};
  for (const p of entry.partitions) out[p.partition] = Number(p.offset);
  return out;
}

/** Waits until the group's committed offsets on `topic` are `want` ({partition: offset}). */
async function waitCommitted(admin, groupId, topic, want, timeoutMs = 60_000) {
  let got;
  const same = () => got && Object.keys(want).every((p) => got[p] === want[p]);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    got = await committedOffsets(admin, groupId, topic);
    if (same()) return got;
    await sleep(100);
  }
  throw new Error(`group ${groupId} committed ${JSON.stringify(got)} on ${topic}, want ${JSON.stringify(want)}`);
}

/** Log end offsets of a topic as {partition: offset}. */
async function endOffsets(admin, topic) {
  const out = {};
  for (const p of await admin.fetchTopicOffsets(topic)) out[p.partition] = Number(p.high);
  return out;
}

module.exports = {
  Strata, withBroker, producer, createTopics, waitUntil, sleep, unique,
  committedOffsets, waitCommitted, endOffsets,
};
