// Janus AudioBridge side by side with our audio-only rooms (issue #9 asks for "no more per
// participant than Janus AudioBridge on the same machine, measured side by side"): Debian's janus
// (1.1.2 on Debian 12), started here on loopback with only its HTTP transport and the AudioBridge
// plugin, and joined by the same werift peers of the same load generator.
//   startJanus()                       -> { url, proc, stop() }
//   janusJoin(pc, url, room, name)     -> { leave() }  (used by bench/generator.mjs)
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const JANUS_BIN = '/usr/bin/janus';
const LIB = '/usr/lib/x86_64-linux-gnu/janus';

/** The interface Janus gathers on, and its address. */
const IFACE = 'mcubench0';
const ADDRESS = '10.255.0.1';

/**
 * Janus's ICE skips every address of a loopback interface, so it is given one of its own: one end
 * of a veth pair, made inside the bench's network namespace (`npm run bench` runs in `unshare -n`),
 * whose other end goes nowhere. Traffic to its address stays on this machine, as loopback does.
 * Refuses outside a namespace of its own, so as never to touch a real host's interfaces.
 */
function ensureInterface() {
  // (Not /sys/class/net: sysfs shows the namespace it was mounted in, not this one.)
  const ifs = execFileSync('ip', ['-o', 'link', 'show']).toString().split('\n').filter(Boolean).map((l) => l.split(': ')[1].split('@')[0]);
  if (ifs.includes(IFACE)) return;
  const others = ifs.filter((i) => i !== 'lo');
  if (others.length > 0) throw new Error(`not in a network namespace of its own (it has ${others.join(', ')}): run the bench with npm run bench`);
  execFileSync('ip', ['link', 'add', IFACE, 'type', 'veth', 'peer', 'name', `${IFACE}p`]);
  execFileSync('ip', ['addr', 'add', `${ADDRESS}/32`, 'dev', IFACE]);
  execFileSync('ip', ['link', 'set', IFACE, 'up']);
  execFileSync('ip', ['link', 'set', `${IFACE}p`, 'up']);
}

/** Janus with a configuration of its own: ICE on the interface above only, no STUN, HTTP on
 * 127.0.0.1, and every plugin but the AudioBridge left out. */
export async function startJanus() {
  if (!fs.existsSync(JANUS_BIN)) throw new Error(`${JANUS_BIN} is missing (npm run bench installs Debian's janus)`);
  ensureInterface();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcu-bench-janus-'));
  const port = 18000 + (process.pid % 1000);
  const plugins = fs.readdirSync(path.join(LIB, 'plugins')).filter((f) => /^libjanus_\w+\.so$/.test(f) && f !== 'libjanus_audiobridge.so');
  const transports = fs.readdirSync(path.join(LIB, 'transports')).filter((f) => /^libjanus_\w+\.so$/.test(f) && f !== 'libjanus_http.so');
  fs.writeFileSync(
    path.join(dir, 'janus.jcfg'),
    `general: {
  configs_folder = "${dir}"
  plugins_folder = "${LIB}/plugins"
  transports_folder = "${LIB}/transports"
  events_folder = "${LIB}/events"
  loggers_folder = "${LIB}/loggers"
  debug_level = ${process.env.BENCH_JANUS_DEBUG ?? 2}
  session_timeout = 120
}
media: {
  rtp_port_range = "30000-39999"
}
nat: {
  ice_enforce_list = "${IFACE}"
  ignore_mdns = true
}
plugins: { disable = "${plugins.join(',')}" }
transports: { disable = "${transports.join(',')}" }
events: { broadcast = false }
`,
  );
  fs.writeFileSync(path.join(dir, 'janus.transport.http.jcfg'), `general: { json = "compact" base_path = "/janus" http = true port = ${port} ip = "127.0.0.1" https = false }\nadmin: { admin_base_path = "/admin" admin_http = false }\n`);
  fs.writeFileSync(path.join(dir, 'janus.plugin.audiobridge.jcfg'), 'general: { }\n');
  const proc = spawn(JANUS_BIN, ['-C', path.join(dir, 'janus.jcfg'), '-F', dir, '-L', path.join(dir, 'janus.log')], { stdio: 'ignore' });
  // Janus goes with the bench, however the bench ends.
  const kill = () => proc.kill('SIGKILL');
  process.once('exit', kill);
  const url = `http://127.0.0.1:${port}/janus`;
  const end = performance.now() + 15_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`janus exited (${proc.exitCode}); see ${dir}/janus.log`);
    const ok = await fetch(`${url}/info`).then((r) => r.ok).catch(() => false);
    if (ok) break;
    if (performance.now() > end) throw new Error(`janus did not answer on ${url} within 15 s; see ${dir}/janus.log`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    proc,
    async stop() {
      process.off('exit', kill);
      proc.kill('SIGINT');
      await new Promise((r) => (proc.exitCode !== null ? r() : proc.once('exit', r)));
      if (!process.env.BENCH_KEEP_JANUS) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

let tx = 0;
async function janus(url, body) {
  const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ ...body, transaction: `t${++tx}` }) });
  const j = await res.json();
  if (j.janus === 'error') throw new Error(`janus: ${j.error?.reason ?? JSON.stringify(j)}`);
  return j;
}

/** A session with the AudioBridge plugin attached, and its event long-poll. */
async function attach(url) {
  const session = (await janus(url, { janus: 'create' })).data.id;
  const handle = (await janus(`${url}/${session}`, { janus: 'attach', plugin: 'janus.plugin.audiobridge' })).data.id;
  const waiters = [];
  let open = true;
  (async () => {
    while (open) {
      const evs = await fetch(`${url}/${session}?maxev=10`).then((r) => r.json()).catch(() => []);
      for (const e of [evs].flat()) for (const w of [...waiters]) if (w.test(e)) waiters.splice(waiters.indexOf(w), 1) && w.resolve(e);
    }
  })();
  return {
    post: (body) => janus(`${url}/${session}/${handle}`, body),
    event: (test, ms = 10_000) =>
      new Promise((resolve, reject) => {
        const w = { test, resolve };
        waiters.push(w);
        setTimeout(() => reject(new Error('no event from janus in time')), ms).unref();
      }),
    async close() {
      open = false;
      await janus(`${url}/${session}`, { janus: 'destroy' }).catch(() => undefined);
    },
  };
}

const created = new Set();

/**
 * Joins an AudioBridge room (made on first use: 48 kHz, Janus's defaults otherwise, which means
 * Opus at complexity 4 and every participant in the mix) with a werift peer whose audio
 * transceiver is set up: offers, joins with the offer, applies the answer.
 */
export async function janusJoin(pc, url, room, name) {
  const h = await attach(url);
  if (!created.has(`${url} ${room}`)) {
    const r = await h.post({ janus: 'message', body: { request: 'create', room, sampling_rate: 48000, audiolevel_event: false } });
    const data = r.plugindata?.data;
    if (data?.error_code && data.error_code !== 486 /* room exists */) throw new Error(`janus create: ${data.error}`);
    created.add(`${url} ${room}`);
  }
  await pc.setLocalDescription(await pc.createOffer());
  if (pc.iceGatheringState !== 'complete') await pc.iceGatheringStateChange.watch((s) => s === 'complete', 5000);
  const answered = h.event((e) => e.jsep?.type === 'answer');
  await h.post({ janus: 'message', body: { request: 'join', room, display: name, muted: false }, jsep: { type: 'offer', sdp: pc.localDescription.sdp } });
  const e = await answered;
  await pc.setRemoteDescription({ type: 'answer', sdp: e.jsep.sdp });
  return { leave: () => h.close() };
}
