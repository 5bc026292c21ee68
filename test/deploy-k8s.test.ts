/**
 * deploy/k8s/ (README "Scaling out"): kubectl is not available here, so the manifests are
 * parsed as YAML and the fields that make the pattern work are checked against each other and
 * against deploy/haproxy.cfg: the instance id each pod derives from its ordinal, the per-pod
 * DNS names HAProxy routes JOINs to, ports, the drain grace within the termination grace.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';

const ROOT = resolve(import.meta.dirname, '..');
const K8S = join(ROOT, 'deploy/k8s');

// The manifests' shape, as far as these checks read it.
interface Port { name?: string; port?: number; containerPort?: number; targetPort?: string | number; protocol?: string }
interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: { name: string; value: string }[];
  ports?: Port[];
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec {
  containers: Container[];
  volumes?: { name: string; secret?: { secretName: string; defaultMode?: number }; configMap?: { name: string } }[];
  terminationGracePeriodSeconds?: number;
}
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec?: {
    clusterIP?: string;
    type?: string;
    selector?: Record<string, string> & { matchLabels?: Record<string, string> };
    ports?: Port[];
    serviceName?: string;
    replicas?: number;
    template?: { metadata: { labels: Record<string, string> }; spec: PodSpec };
  };
  data?: Record<string, string>;
}

function load(): Manifest[] {
  const out: Manifest[] = [];
  for (const f of readdirSync(K8S).filter((n) => n.endsWith('.yaml'))) {
    for (const doc of parseAllDocuments(readFileSync(join(K8S, f), 'utf8'))) {
      if (doc.errors.length > 0) throw new Error(`${f}: ${doc.errors.map((e) => e.message).join('; ')}`);
      out.push(doc.toJS() as Manifest);
    }
  }
  return out;
}

const manifests = load();
const find = (kind: string, name: string): Manifest => {
  const m = manifests.find((x) => x.kind === kind && x.metadata.name === name);
  if (!m) throw new Error(`no ${kind} ${name} in deploy/k8s`);
  return m;
};
const sts = find('StatefulSet', 'plait');
const haproxy = find('Deployment', 'plait-haproxy');
const plaitPod = sts.spec!.template!.spec;
const plait = plaitPod.containers[0]!;
const hap = haproxy.spec!.template!.spec.containers[0]!;
const env = (c: Container, name: string): string => {
  const v = c.env?.find((e) => e.name === name)?.value;
  if (v === undefined) throw new Error(`${c.name} has no ${name}`);
  return v;
};
const portOf = (c: Container, name: string): number => c.ports!.find((p) => p.name === name)!.containerPort!;
const flag = (cmd: string, name: string): string | undefined => new RegExp(`${name}\\s+("[^"]*"|\\S+)`).exec(cmd)?.[1];

/** The server's command line as the pod's shell expands it, for pod `hostname`. */
function expandCommand(hostname: string): string {
  const [sh, dashC, script] = plait.command!;
  expect([sh, dashC]).toEqual(['sh', '-c']);
  return execFileSync('sh', ['-c', script!.replace(/^exec plait /, 'echo plait ')], { env: { HOSTNAME: hostname, PATH: process.env.PATH } }).toString().trim();
}

describe('deploy/k8s manifests', () => {
  it('parse, and every document names its apiVersion, kind and name', () => {
    expect(manifests.length).toBeGreaterThanOrEqual(5);
    for (const m of manifests) {
      expect(typeof m.apiVersion).toBe('string');
      expect(typeof m.kind).toBe('string');
      expect(m.metadata.name).toMatch(/^[a-z0-9-]+$/);
    }
  });

  it('each plait pod takes a distinct instance id from its ordinal (plait-0 is instance 1)', () => {
    const ids = Array.from({ length: sts.spec!.replicas! }, (_, i) => {
      const cmd = expandCommand(`plait-${i}`);
      expect(cmd).toMatch(/^plait server /);
      return Number(flag(cmd, '--instance-id'));
    });
    expect(ids).toEqual(Array.from({ length: sts.spec!.replicas! }, (_, i) => i + 1));
  });

  it('the StatefulSet is behind a headless service of its own name, selecting its pods', () => {
    const svc = find('Service', sts.spec!.serviceName!);
    expect(svc.spec!.clusterIP).toBe('None');
    const labels = sts.spec!.template!.metadata.labels;
    expect(sts.spec!.selector!.matchLabels).toEqual(labels);
    for (const [k, v] of Object.entries(svc.spec!.selector!)) expect(labels[k]).toBe(v);
  });

  it('the server listens on its container port, reads the mounted secret, and drains within the termination grace', () => {
    const cmd = expandCommand('plait-0');
    expect(Number(flag(cmd, '--listen')!.split(':').pop())).toBe(portOf(plait, 'plait'));
    const secretFile = flag(cmd, '--secret-file')!;
    const mount = plait.volumeMounts!.find((m) => secretFile.startsWith(`${m.mountPath}/`))!;
    expect(mount, 'the --secret-file is on a mounted volume').toBeDefined();
    const vol = plaitPod.volumes!.find((v) => v.name === mount.name)!;
    expect(vol.secret?.secretName).toBe('plait-secret');
    // Group-readable for fsGroup (0440 = 288), not world-readable.
    expect((vol.secret!.defaultMode! & 0o007) === 0).toBe(true);
    expect(Number(flag(cmd, '--drain-grace'))).toBeLessThan(plaitPod.terminationGracePeriodSeconds!);
  });

  it('HAProxy runs deploy/haproxy.cfg unchanged, with one PLAIT_NODE<N> per pod named plait-<N-1>.plait', () => {
    const cm = find('ConfigMap', 'plait-haproxy');
    expect(cm.data!['haproxy.cfg']).toBe(readFileSync(join(ROOT, 'deploy/haproxy.cfg'), 'utf8'));
    const mount = hap.volumeMounts!.find((m) => m.name === 'config')!;
    expect(hap.args).toEqual(['-f', `${mount.mountPath}/haproxy.cfg`]);
    const port = portOf(plait, 'plait');
    for (let n = 1; n <= sts.spec!.replicas!; n++) {
      expect(env(hap, `PLAIT_NODE${n}`)).toBe(`${sts.metadata.name}-${n - 1}.${sts.spec!.serviceName}:${port}`);
    }
    expect(hap.env!.filter((e) => /^PLAIT_NODE\d+$/.test(e.name))).toHaveLength(sts.spec!.replicas!);
    expect(Number(env(hap, 'PLAIT_LB_BIND').split(':').pop())).toBe(portOf(hap, 'plait'));
  });

  it('haproxy.cfg routes a JOIN naming instance N to PLAIT_NODE<N>, and balances HELLOs over all of them', () => {
    const cfg = readFileSync(join(ROOT, 'deploy/haproxy.cfg'), 'utf8');
    for (let n = 1; n <= sts.spec!.replicas!; n++) {
      const hex = n.toString(16).padStart(4, '0');
      expect(cfg).toMatch(new RegExp(`use_backend plait_node${n} if join_with_instance \\{ req.payload\\(6,2\\) -m bin ${hex} \\}`));
      expect(cfg).toMatch(new RegExp(`backend plait_node${n}\\n\\s+server node${n} "\\$\\{PLAIT_NODE${n}\\}"`));
      expect(cfg).toMatch(new RegExp(`backend plait_hello\\n(?:\\s+.*\\n)*?\\s+server node${n} "\\$\\{PLAIT_NODE${n}\\}"`));
    }
  });

  it('clients reach HAProxy through a TCP LoadBalancer service', () => {
    const lb = manifests.find((m) => m.kind === 'Service' && m.spec?.type === 'LoadBalancer')!;
    expect(lb).toBeDefined();
    const p = lb.spec!.ports![0]!;
    expect(p.protocol).toBe('TCP');
    expect(hap.ports!.some((c) => c.name === p.targetPort)).toBe(true);
    for (const [k, v] of Object.entries(lb.spec!.selector!)) expect(haproxy.spec!.template!.metadata.labels[k]).toBe(v);
  });
});
