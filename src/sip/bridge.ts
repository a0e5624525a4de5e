import crypto from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import os from 'node:os';
import sip, { type NameAddr, type Remote, type SipRequest, type SipResponse, type SipUri, type Stack, type StackOptions } from 'sip';
import { createLogger, type Logger } from '../core/log.js';

/**
 * A SIP gateway into rooms (issue #12): a SIP user agent server that turns each INVITE into a plain
 * RTP leg of the MCU. The caller's SDP offer (RTP/AVP) is POSTed to
 * /v1/rooms/{room}/participants with the admin key, and the MCU's SDP answer goes back in the 200 OK,
 * so the media flows between the caller (or its media relay) and the MCU directly; this bridge
 * carries signalling only. The room is the Request-URI's user part (sip:ROOM@bridge), or one fixed
 * room.
 *
 * What it does not do: late offer (an INVITE without SDP gets 488: the MCU answers offers, it makes
 * none), SDP changes in a re-INVITE (hold, a new port: answered with the same answer; the MCU's
 * symmetric RTP follows the caller's source address anyway), authentication of callers (put it
 * behind a SIP proxy that does), 100rel/PRACK, and SIP INFO DTMF (use RFC 4733, which the MCU takes).
 *
 * SIP transactions and transport (UDP and TCP) are kirm/sip.js's; dialogs are kept here.
 */

export interface SipBridgeOptions {
  /** Where to listen for SIP, UDP and TCP. */
  host: string;
  port: number;
  /** The MCU's base URL, e.g. http://127.0.0.1:8080. */
  mcu: string;
  /** Its admin API key: plain RTP legs are an admin's to create. */
  apiKey: string;
  /** Every call goes to this room; otherwise the Request-URI's user part names it. */
  room?: string;
  /** Host in our Via and Contact headers. Default: `host`, or this machine's first IPv4 address when that is 0.0.0.0. */
  publicAddress?: string;
  /** How often each live call's leg is looked at on the MCU (GET; 404 means it was removed). Default 5000 ms. */
  pollMs?: number;
  /** Listen on TCP as well as UDP. Default true. */
  tcp?: boolean;
  log?: Logger;
}

export interface SipBridge {
  readonly host: string;
  readonly port: number;
  /** Calls answered and not yet ended. */
  liveCalls(): number;
  /** BYE to every live call and DELETE of its leg; refuses calls still being set up; then stops listening. */
  close(): Promise<void>;
}

type CallState = 'pending' | 'answered' | 'confirmed' | 'ended';

interface Call {
  key: string;
  callId: string;
  localTag: string;
  invite: SipRequest;
  /** Branch of the INVITE's top Via: a CANCEL names the INVITE by it. */
  branch: string;
  room: string;
  name: string;
  state: CallState;
  cancelled: boolean;
  participantUrl?: string;
  participantId?: string;
  answer?: string;
  /** The caller: where in-dialog requests go (its Contact) and by which route (Record-Route). */
  remoteTarget: string;
  routeSet: NameAddr[];
  localCseq: number;
  /** The last 2xx to an INVITE, retransmitted until its ACK comes (RFC 3261 13.3.1.4). */
  okCseq?: number;
  retransmit?: NodeJS.Timeout;
  ackDeadline?: NodeJS.Timeout;
  poll?: NodeJS.Timeout;
  polling: boolean;
  log: Logger;
}

const ALLOW = 'INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE';
const T1 = 500;
const T2 = 4000;

/** MCU refusal (HTTP status) to a SIP final response. */
export function sipStatusFor(httpStatus: number): { status: number; reason: string; retryAfter: boolean } {
  switch (httpStatus) {
    case 400:
      return { status: 400, reason: 'Bad Request', retryAfter: false };
    case 401:
    case 403:
      return { status: 403, reason: 'Forbidden', retryAfter: false };
    case 404:
      return { status: 404, reason: 'Not Found', retryAfter: false };
    case 409:
      return { status: 486, reason: 'Busy Here', retryAfter: false };
    case 415:
      return { status: 488, reason: 'Not Acceptable Here', retryAfter: false };
    case 429:
    case 503:
      return { status: 503, reason: 'Service Unavailable', retryAfter: true };
    default:
      return { status: 500, reason: 'Server Internal Error', retryAfter: false };
  }
}

const unquote = (s: string | undefined) => (s ?? '').trim().replace(/^"(.*)"$/s, '$1').replace(/\\(.)/g, '$1').trim();
const uriOf = (a: NameAddr | undefined): SipUri | undefined => (a ? sip.parseUri(a.uri) : undefined);
const newTag = () => crypto.randomBytes(6).toString('hex');

/** Fails with a plain message when host:port is taken (the SIP library would throw from a socket event). */
async function checkFree(host: string, port: number, tcp: boolean): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const s = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    s.once('error', (e) => reject(new Error(`cannot listen for SIP on UDP ${host}:${port}: ${e.message}`)));
    s.bind(port, host, () => s.close(() => resolve()));
  });
  if (!tcp) return;
  await new Promise<void>((resolve, reject) => {
    const s = net.createServer();
    s.once('error', (e) => reject(new Error(`cannot listen for SIP on TCP ${host}:${port}: ${e.message}`)));
    s.listen(port, host, () => s.close(() => resolve()));
  });
}

function defaultPublicAddress(host: string): string {
  if (host !== '0.0.0.0' && host !== '::') return host;
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

export async function startSipBridge(o: SipBridgeOptions): Promise<SipBridge> {
  const log = o.log ?? createLogger('sip');
  const base = o.mcu.replace(/\/+$/, '');
  const pollMs = o.pollMs ?? 5000;
  const tcp = o.tcp ?? true;
  const publicAddress = o.publicAddress ?? defaultPublicAddress(o.host);
  if (!Number.isInteger(o.port) || o.port < 1 || o.port > 65535) throw new Error(`SIP port must be 1-65535, not ${o.port}`);
  await checkFree(o.host, o.port, tcp);

  const calls = new Map<string, Call>();
  let closing = false;

  const mcuFetch = (method: string, url: string, body?: string) =>
    fetch(url, {
      method,
      headers: { Authorization: `Bearer ${o.apiKey}`, ...(body !== undefined ? { 'Content-Type': 'application/sdp' } : {}) },
      body,
      signal: AbortSignal.timeout(20_000),
    });

  // sip.js treats a request whose next hop has the stack's own host as one to a "flow URI" of its
  // own and drops it when the user part is not one of its flow tokens, so a BYE to a caller on the
  // same address as ours (a SIP server on the same machine) would never leave. The stack takes that
  // host once, at creation, from publicAddress; Via headers read publicAddress at each send. So the
  // stack is created with a host no one has (RFC 2606 .invalid), then Via gets the real one.
  const stackOptions: StackOptions = {
    address: o.host,
    port: o.port,
    publicAddress: 'sip-bridge.invalid',
    tcp,
    logger: { error: (e) => log.warn(`SIP stack: ${(e as Error)?.message ?? e}`) },
  };
  const stack: Stack = sip.create(stackOptions, (rq, remote) => {
    try {
      onRequest(rq, remote);
    } catch (err) {
      log.error(`${rq.method}: ${(err as Error).stack ?? err}`);
      if (rq.method !== 'ACK') stack.send(sip.makeResponse(rq, 500, 'Server Internal Error'));
    }
  });
  stackOptions.publicAddress = publicAddress;

  /** A response to `rq`; with `tag`, the To tag of our side of the dialog. */
  function respond(rq: SipRequest, status: number, reason: string, opts: { tag?: string; headers?: Record<string, unknown>; sdp?: string } = {}): SipResponse {
    const rs = sip.makeResponse(rq, status, reason);
    const to = rq.headers.to!;
    if (opts.tag && status > 100) rs.headers.to = { ...to, params: { ...to.params, tag: to.params?.tag ?? opts.tag } };
    if (status >= 200 && status < 300 && rq.headers['record-route']) rs.headers['record-route'] = rq.headers['record-route'];
    Object.assign(rs.headers, opts.headers ?? {});
    if (opts.sdp !== undefined) {
      rs.headers['content-type'] = 'application/sdp';
      rs.content = opts.sdp;
    }
    stack.send(rs);
    return rs;
  }

  const contactFor = (call: Call, remote: Remote) => [
    { uri: { schema: 'sip', user: call.room, host: publicAddress, port: o.port, params: remote.protocol === 'TCP' ? { transport: 'tcp' } : {} }, params: {} },
  ];

  /** A 2xx to an INVITE (the first or a re-INVITE), sent again at T1, 2T1 ... T2 until its ACK; no ACK in 64*T1: the call ends. */
  function sendOk(call: Call, rq: SipRequest, remote: Remote) {
    const rs = respond(rq, 200, 'OK', { tag: call.localTag, sdp: call.answer, headers: { contact: contactFor(call, remote), allow: ALLOW } });
    clearTimeout(call.retransmit);
    clearTimeout(call.ackDeadline);
    call.okCseq = rq.headers.cseq!.seq;
    if (remote.protocol === 'UDP') {
      const again = (t: number) => {
        call.retransmit = setTimeout(() => {
          stack.send(rs);
          again(Math.min(2 * t, T2));
        }, t);
      };
      again(T1);
    }
    call.ackDeadline = setTimeout(() => {
      clearTimeout(call.retransmit);
      call.log.warn('no ACK for the 200 OK in 32 s: hanging up');
      void hangUp(call, 'no ACK', true);
    }, 64 * T1);
  }

  function endCall(call: Call) {
    call.state = 'ended';
    clearTimeout(call.retransmit);
    clearTimeout(call.ackDeadline);
    clearInterval(call.poll);
    calls.delete(call.key);
  }

  async function deleteLeg(call: Call, why: string) {
    if (!call.participantUrl) return;
    try {
      const res = await mcuFetch('DELETE', call.participantUrl);
      call.log.info(`leg ${call.participantId} deleted at the MCU (${why}): HTTP ${res.status}`);
    } catch (err) {
      call.log.warn(`DELETE of leg ${call.participantId} failed (${why}): ${(err as Error).message}`);
    }
  }

  /** BYE to the caller in the dialog; resolves with its final response's status (or 0 when none came in `timeoutMs`). */
  function sendBye(call: Call, timeoutMs = 32_000): Promise<number> {
    const inv = call.invite.headers;
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(0), timeoutMs);
      stack.send(
        {
          method: 'BYE',
          uri: call.remoteTarget,
          headers: {
            to: inv.from,
            from: { uri: inv.to!.uri, params: { tag: call.localTag } },
            'call-id': call.callId,
            cseq: { method: 'BYE', seq: ++call.localCseq },
            'max-forwards': 70,
            route: call.routeSet.length ? call.routeSet : undefined,
          },
        },
        (rs) => {
          if (rs.status >= 200) {
            clearTimeout(t);
            resolve(rs.status);
          }
        },
      );
    });
  }

  /** Our side ends the call: BYE to the caller, and the leg deleted unless the MCU already removed it. */
  async function hangUp(call: Call, why: string, deleteIt: boolean, byeTimeoutMs?: number) {
    if (call.state === 'ended') return;
    endCall(call);
    const bye = sendBye(call, byeTimeoutMs);
    if (deleteIt) await deleteLeg(call, why);
    const status = await bye;
    call.log.info(`BYE sent (${why}): ${status ? `${status} from the caller` : 'no answer'}`);
  }

  function startPolling(call: Call) {
    call.poll = setInterval(async () => {
      if (call.polling || call.state === 'ended' || !call.participantUrl) return;
      call.polling = true;
      try {
        const res = await mcuFetch('GET', call.participantUrl);
        if (res.status === 404 && (call.state as CallState) !== 'ended') {
          call.log.info(`leg ${call.participantId} is gone from the MCU (removed, or silent for MCU_RTP_TIMEOUT_MS)`);
          await hangUp(call, 'leg removed by the MCU', false);
        }
      } catch (err) {
        call.log.warn(`cannot look at leg ${call.participantId}: ${(err as Error).message}`);
      } finally {
        call.polling = false;
      }
    }, pollMs);
  }

  async function onInvite(rq: SipRequest, remote: Remote) {
    const callId = rq.headers['call-id']!;
    const from = rq.headers.from!;
    const localTag = newTag();
    const room = o.room ?? decodeURIComponent(sip.parseUri(rq.uri)?.user ?? '');
    const name = unquote(from.name) || uriOf(from)?.user || 'SIP caller';
    const callLog = log.child({ call: callId.slice(0, 24), room: room || undefined });
    const call: Call = {
      key: `${callId}|${localTag}`,
      callId,
      localTag,
      invite: rq,
      branch: String(rq.headers.via?.[0]?.params.branch ?? ''),
      room,
      name,
      state: 'pending',
      cancelled: false,
      remoteTarget: sip.stringifyUri((Array.isArray(rq.headers.contact) && rq.headers.contact[0]?.uri) || from.uri),
      routeSet: rq.headers['record-route'] ?? [],
      localCseq: 0,
      polling: false,
      log: callLog,
    };
    respond(rq, 100, 'Trying');
    const refuse = (status: number, reason: string, why: string, headers: Record<string, unknown> = {}) => {
      callLog.info(`INVITE from ${JSON.stringify(name)} refused: ${status} ${reason} (${why})`);
      respond(rq, status, reason, { tag: localTag, headers: { ...headers, warning: `399 ${publicAddress} ${JSON.stringify(why.replace(/["\\\r\n]/g, ' ').slice(0, 200))}` } });
    };
    if (closing) return refuse(503, 'Service Unavailable', 'the bridge is shutting down');
    const require = String(rq.headers.require ?? '').trim();
    if (require) return refuse(420, 'Bad Extension', `extensions not supported: ${require}`, { unsupported: require });
    if (!room) return refuse(404, 'Not Found', 'no room: call sip:ROOM@bridge');
    const type = String(rq.headers['content-type'] ?? '').toLowerCase();
    if (!rq.content || !rq.content.trim() || !type.startsWith('application/sdp')) {
      return refuse(488, 'Not Acceptable Here', 'an SDP offer is needed in the INVITE (this bridge does not do late offer)', { accept: 'application/sdp' });
    }
    calls.set(call.key, call);
    callLog.info(`INVITE from ${JSON.stringify(name)} (${remote.protocol} ${remote.address}:${remote.port}): joining`);

    let res: Response;
    try {
      res = await mcuFetch('POST', `${base}/v1/rooms/${encodeURIComponent(room)}/participants?name=${encodeURIComponent(name)}`, rq.content);
    } catch (err) {
      calls.delete(call.key);
      if (call.cancelled) return;
      return refuse(503, 'Service Unavailable', `MCU unreachable: ${(err as Error).message}`, { 'retry-after': '5' });
    }
    if (res.status !== 201) {
      calls.delete(call.key);
      const text = await res.text().catch(() => '');
      if (call.cancelled) return;
      let why = `MCU ${res.status}`;
      try {
        const e = JSON.parse(text).error;
        if (e) why += ` ${e.code}: ${e.message}`;
      } catch {
        /* not JSON */
      }
      const m = sipStatusFor(res.status);
      return refuse(m.status, m.reason, why, m.retryAfter ? { 'retry-after': res.headers.get('retry-after') ?? '5' } : {});
    }
    call.answer = await res.text();
    call.participantUrl = new URL(res.headers.get('location')!, `${base}/`).toString();
    call.participantId = call.participantUrl.split('/').pop();
    if (call.cancelled || closing) {
      calls.delete(call.key);
      await deleteLeg(call, call.cancelled ? 'CANCEL came during the join' : 'the bridge is shutting down');
      if (!call.cancelled) refuse(503, 'Service Unavailable', 'the bridge is shutting down');
      return;
    }
    call.state = 'answered';
    sendOk(call, rq, remote);
    callLog.info(`200 OK: leg ${call.participantId} in room ${room}`);
    startPolling(call);
  }

  function inDialog(rq: SipRequest): Call | undefined {
    const tag = rq.headers.to?.params?.tag;
    return tag ? calls.get(`${rq.headers['call-id']}|${tag}`) : undefined;
  }

  function onRequest(rq: SipRequest, remote: Remote) {
    const method = rq.method;
    if (method === 'INVITE' && !rq.headers.to?.params?.tag) {
      void onInvite(rq, remote).catch((err) => {
        log.error(`INVITE: ${(err as Error).stack ?? err}`);
        respond(rq, 500, 'Server Internal Error');
      });
      return;
    }
    if (method === 'OPTIONS' && !inDialog(rq)) {
      respond(rq, 200, 'OK', { tag: newTag(), headers: { allow: ALLOW, accept: 'application/sdp' } });
      return;
    }
    if (method === 'CANCEL') {
      const branch = rq.headers.via?.[0]?.params.branch;
      const call = [...calls.values()].find((c) => c.callId === rq.headers['call-id'] && c.branch === branch && c.state === 'pending');
      if (!call) {
        respond(rq, 481, 'Call/Transaction Does Not Exist');
        return;
      }
      respond(rq, 200, 'OK');
      call.cancelled = true;
      respond(call.invite, 487, 'Request Terminated', { tag: call.localTag });
      call.log.info('CANCEL: 487 to the INVITE');
      return;
    }
    const call = inDialog(rq);
    if (method === 'ACK') {
      if (call && rq.headers.cseq?.seq === call.okCseq) {
        clearTimeout(call.retransmit);
        clearTimeout(call.ackDeadline);
        if (call.state === 'answered') {
          call.state = 'confirmed';
          call.log.info('ACK: call up');
        }
      }
      return;
    }
    if (!call) {
      respond(rq, 481, 'Call/Transaction Does Not Exist', { tag: newTag() });
      return;
    }
    switch (method) {
      case 'BYE': {
        endCall(call);
        call.log.info(`BYE from the caller`);
        void deleteLeg(call, 'BYE from the caller').then(() => respond(rq, 200, 'OK'));
        return;
      }
      case 'INVITE':
        // Hold, session refresh, a new port: the same answer (the MCU sends back to where RTP comes from).
        call.log.info('re-INVITE: the same answer');
        sendOk(call, rq, remote);
        return;
      case 'UPDATE':
        call.log.info('UPDATE: the same answer');
        respond(rq, 200, 'OK', { tag: call.localTag, ...(rq.content?.trim() ? { sdp: call.answer } : {}), headers: { contact: contactFor(call, remote) } });
        return;
      case 'OPTIONS':
        respond(rq, 200, 'OK', { tag: call.localTag, headers: { allow: ALLOW, accept: 'application/sdp' } });
        return;
      default:
        respond(rq, 405, 'Method Not Allowed', { tag: call.localTag, headers: { allow: ALLOW } });
    }
  }

  log.info(`SIP bridge listening on ${o.host}:${o.port} (UDP${tcp ? ', TCP' : ''}), rooms at ${base}${o.room ? `, every call to room ${o.room}` : ''}`);

  return {
    host: o.host,
    port: o.port,
    liveCalls: () => [...calls.values()].filter((c) => c.state === 'answered' || c.state === 'confirmed').length,
    async close() {
      closing = true;
      const live = [...calls.values()];
      await Promise.all(live.filter((c) => c.state === 'answered' || c.state === 'confirmed').map((c) => hangUp(c, 'the bridge is shutting down', true, 4000)));
      // Calls still joining are refused when their join returns (see onInvite); give them a moment.
      const deadline = Date.now() + 5000;
      while ([...calls.values()].some((c) => c.state === 'pending') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      stack.destroy();
      log.info('SIP bridge closed');
    },
  };
}
