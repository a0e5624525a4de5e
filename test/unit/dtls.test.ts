import { describe, expect, it } from 'vitest';
import { CipherContext, DtlsClient, DtlsServer, HashAlgorithm, NamedCurveAlgorithm, NamedCurveAlgorithmList, SignatureAlgorithm } from 'werift';

/** One end of an in-memory datagram link whose every datagram arrives twice, as when a flight is
 * retransmitted under load and the peer answers both copies. */
class DuplicatingEnd {
  constructor(private readonly twice = true) {}
  onData?: (buf: Buffer) => void;
  peer?: DuplicatingEnd;
  closed = false;
  async send(buf: Buffer): Promise<void> {
    const to = this.peer!;
    setTimeout(() => !to.closed && to.onData?.(Buffer.from(buf)), 1);
    if (this.twice) setTimeout(() => !to.closed && to.onData?.(Buffer.from(buf)), 15);
  }
  close(): void {
    this.closed = true;
  }
}

/** A werift DTLS client and server over an in-memory link (each datagram twice, or once). */
async function handshake(link: 'duplicating' | 'plain' = 'duplicating') {
  const { certPem, keyPem, signatureHash } = await CipherContext.createSelfSignedCertificateWithKey(
    { signature: SignatureAlgorithm.ecdsa_3, hash: HashAlgorithm.sha256_4 },
    NamedCurveAlgorithm.secp256r1_23,
  );
  const a = new DuplicatingEnd(link === 'duplicating');
  const b = new DuplicatingEnd(link === 'duplicating');
  a.peer = b;
  b.peer = a;
  const opts = { cert: certPem, key: keyPem, signatureHash, srtpProfiles: [1, 7], extendedMasterSecret: true };
  const server = new DtlsServer({ ...opts, transport: a as never, certificateRequest: true });
  const client = new DtlsClient({ ...opts, transport: b as never });
  const errors: unknown[] = [];
  client.onError.subscribe((e: unknown) => errors.push(e));
  server.onError.subscribe((e: unknown) => errors.push(e));
  const connected = Promise.all([new Promise((r) => client.onConnect.once(r)), new Promise((r) => server.onConnect.once(r))]);
  await client.connect();
  await Promise.race([connected, new Promise((_, f) => setTimeout(() => f(new Error(`no handshake; errors: ${errors.join(', ')}`)), 8000))]);
  // Copies that arrive after the handshake completed must not fail it either (the last copies
  // leave 15 ms after their originals).
  await new Promise((r) => setTimeout(r, 100));
  expect(errors).toEqual([]);
  expect(client.connected && server.connected).toBe(true);
  // Both ends derived the same keys from the key exchange.
  const keys = client.exportKeyingMaterial('EXTRACTOR-dtls_srtp', 60);
  expect(keys.length).toBe(60);
  expect(keys.equals(server.exportKeyingMaterial('EXTRACTOR-dtls_srtp', 60))).toBe(true);
  a.close();
  b.close();
}

describe('werift DTLS with duplicated flights (patches/werift+0.25.2.patch; issue #9)', () => {
  it('completes the handshake when every handshake datagram arrives twice, in both directions', async () => {
    await handshake('duplicating');
  });
});

describe('werift DTLS key exchange in node:crypto (patches/werift+0.25.2.patch)', () => {
  // The client offers, and the server takes, the curves of this list: one at a time here.
  for (const [name, curve] of [
    ['X25519', NamedCurveAlgorithm.x25519_29],
    ['P-256', NamedCurveAlgorithm.secp256r1_23],
  ] as const) {
    it(`completes a handshake over ${name}`, async () => {
      const all = NamedCurveAlgorithmList.splice(0, NamedCurveAlgorithmList.length, curve);
      try {
        await handshake('plain');
      } finally {
        NamedCurveAlgorithmList.splice(0, NamedCurveAlgorithmList.length, ...all);
      }
    });
  }
});
