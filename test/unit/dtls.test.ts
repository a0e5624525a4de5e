import { describe, expect, it } from 'vitest';
import { CipherContext, DtlsClient, DtlsServer, HashAlgorithm, NamedCurveAlgorithm, SignatureAlgorithm } from 'werift';

/** One end of an in-memory datagram link whose every datagram arrives twice, as when a flight is
 * retransmitted under load and the peer answers both copies. */
class DuplicatingEnd {
  onData?: (buf: Buffer) => void;
  peer?: DuplicatingEnd;
  closed = false;
  async send(buf: Buffer): Promise<void> {
    const to = this.peer!;
    setTimeout(() => !to.closed && to.onData?.(Buffer.from(buf)), 1);
    setTimeout(() => !to.closed && to.onData?.(Buffer.from(buf)), 15);
  }
  close(): void {
    this.closed = true;
  }
}

describe('werift DTLS with duplicated flights (patches/werift+0.25.2.patch; issue #9)', () => {
  it('completes the handshake when every handshake datagram arrives twice, in both directions', async () => {
    const { certPem, keyPem, signatureHash } = await CipherContext.createSelfSignedCertificateWithKey(
      { signature: SignatureAlgorithm.ecdsa_3, hash: HashAlgorithm.sha256_4 },
      NamedCurveAlgorithm.secp256r1_23,
    );
    const a = new DuplicatingEnd();
    const b = new DuplicatingEnd();
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
    a.close();
    b.close();
  });
});
