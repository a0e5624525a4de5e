import { describe, expect, it } from 'vitest';
import { BadRequestError, UnsupportedMediaError } from '../../src/core/errors.js';
import { inspectOffer, stripMdnsCandidates } from '../../src/rtc/sdp.js';

const offer = (media: string) =>
  [
    'v=0',
    'o=- 1 2 IN IP4 127.0.0.1',
    's=-',
    't=0 0',
    'a=group:BUNDLE 0 1',
    'a=fingerprint:sha-256 AA:BB',
    media,
  ].join('\r\n') + '\r\n';

const audio = [
  'm=audio 9 UDP/TLS/RTP/SAVPF 111',
  'a=mid:0',
  'a=ice-ufrag:abcd',
  'a=ice-pwd:abcdefghijklmnopqrstuv',
  'a=sendrecv',
  'a=rtpmap:111 opus/48000/2',
].join('\r\n');
const video = (dir = 'sendrecv', codecs = '96 102', extra = '') =>
  [
    `m=video 9 UDP/TLS/RTP/SAVPF ${codecs}`,
    'a=mid:1',
    'a=ice-ufrag:abcd',
    'a=ice-pwd:abcdefghijklmnopqrstuv',
    `a=${dir}`,
    'a=rtpmap:96 VP8/90000',
    'a=rtpmap:102 H264/90000',
    'a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f',
    'a=rtpmap:104 H264/90000',
    'a=fmtp:104 packetization-mode=1;profile-level-id=640032',
    'a=rtpmap:98 VP9/90000',
    extra,
  ]
    .filter(Boolean)
    .join('\r\n');

describe('inspectOffer', () => {
  it('reads kinds, directions and codecs in the order the peer prefers', () => {
    const s = inspectOffer(offer(`${audio}\r\n${video('recvonly', '102 96')}`));
    expect(s.media).toEqual([
      { kind: 'audio', mid: '0', direction: 'sendrecv', codecs: ['opus'] },
      { kind: 'video', mid: '1', direction: 'recvonly', codecs: ['h264', 'vp8'] },
    ]);
  });

  it('takes only constrained-baseline H.264 with packetization-mode 1', () => {
    const s = inspectOffer(offer(video('sendrecv', '104 98 102')));
    expect(s.media[0].codecs).toEqual(['h264']);
  });

  it.each([
    ['', /empty/],
    ['hello world', /not an SDP offer/],
    ['v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\n', /not an SDP offer/],
  ])('rejects %j with a 400 that says what is wrong', (body, msg) => {
    const e = (() => {
      try {
        inspectOffer(body);
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(BadRequestError);
    expect((e as BadRequestError).status).toBe(400);
    expect((e as Error).message).toMatch(msg);
  });

  it('rejects an offer without ICE credentials', () => {
    expect(() => inspectOffer(offer(audio.replace(/a=ice-(ufrag|pwd):.*\r\n/g, '')))).toThrow(/ICE credentials/);
  });

  it('rejects an offer without a DTLS fingerprint', () => {
    expect(() => inspectOffer(offer(audio).replace(/a=fingerprint.*\r\n/, ''))).toThrow(/fingerprint/);
  });

  it('answers 415 when no codec is in common', () => {
    const vp9only = offer(video('sendrecv', '98'));
    expect(() => inspectOffer(vp9only)).toThrow(UnsupportedMediaError);
    expect(() => inspectOffer(vp9only)).toThrow(/VP8, H.264/);
  });

  it('rejects two m-lines that share an a=mid, the rejected one (port 0) included', () => {
    const twice = offer(`${audio.replace('m=audio 9', 'm=audio 0')}\r\n${video().replace('a=mid:1', 'a=mid:0')}`);
    expect(() => inspectOffer(twice)).toThrow(BadRequestError);
    expect(() => inspectOffer(twice)).toThrow(/share a=mid:0/);
  });

  it('refuses an over-long body', () => {
    expect(() => inspectOffer(offer(audio) + 'a=x:' + 'y'.repeat(70_000))).toThrow(/over/);
  });
});

describe('stripMdnsCandidates', () => {
  it('drops .local candidates and keeps the rest', () => {
    const sdp = [
      'a=candidate:1 1 udp 2122260223 3d6a5bd8-1b1b-4b5e-9d3d-3b0e5a9f0c1e.local 54321 typ host',
      'a=candidate:2 1 udp 2122260223 127.0.0.1 54322 typ host',
    ].join('\r\n');
    expect(stripMdnsCandidates(sdp)).toBe('a=candidate:2 1 udp 2122260223 127.0.0.1 54322 typ host');
  });
});

describe('withoutGenericNack', () => {
  it('drops generic NACK feedback and keeps PLI, FIR, REMB and transport-cc', async () => {
    const { withoutGenericNack } = await import('../../src/rtc/native.js');
    const sdp = ['m=video 9 UDP/TLS/RTP/SAVPF 96', 'a=rtcp-fb:96 nack', 'a=rtcp-fb:96 nack pli', 'a=rtcp-fb:96 ccm fir', 'a=rtcp-fb:96 transport-cc', ''].join('\r\n');
    expect(withoutGenericNack(sdp)).toBe(['m=video 9 UDP/TLS/RTP/SAVPF 96', 'a=rtcp-fb:96 nack pli', 'a=rtcp-fb:96 ccm fir', 'a=rtcp-fb:96 transport-cc', ''].join('\r\n'));
  });
});
