import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { MediaStreamTrack } from 'werift';
import { loopbackPeer, whipJoin } from './test/helpers/loopbackPeer.mjs';
const proc = spawn('./bin/mcu', [], { env: { ...process.env, NODE: process.execPath, HOST: '127.0.0.1', PORT: '0', MCU_ICE_ADDRESSES: '127.0.0.1', LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'inherit'] });
const url = await new Promise((r) => { let o = ''; proc.stdout.on('data', (d) => { o += d; const m = /Open (http:\/\/\S+) in/.exec(o); if (m) r(m[1].replace(/\/$/, '')); }); });
const count = () => ({ fds: fs.readdirSync(`/proc/${proc.pid}/fd`).length, threads: fs.readdirSync(`/proc/${proc.pid}/task`).length, rssMB: Math.round(Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${proc.pid}/status`, 'utf8'))[1]) / 1024) });
await new Promise((r) => setTimeout(r, 1000));
const before = count();
console.log('before', before);
for (let round = 0; round < 3; round++) {
  const peers = [];
  for (let i = 0; i < 6; i++) {
    const pc = loopbackPeer();
    pc.addTransceiver(new MediaStreamTrack({ kind: 'audio' }), { direction: 'sendrecv' });
    pc.addTransceiver(new MediaStreamTrack({ kind: 'video' }), { direction: 'sendrecv' });
    const loc = await whipJoin(pc, url, 'fd', `p${i}`);
    peers.push({ pc, loc });
  }
  await new Promise((r) => setTimeout(r, 3000));
  console.log(`round ${round} with 6 peers`, count());
  for (const p of peers) { await fetch(url + p.loc, { method: 'DELETE' }); await p.pc.close(); }
}
await new Promise((r) => setTimeout(r, 33000));
console.log('after the room closed', count());
proc.kill('SIGTERM');
process.exit(0);
