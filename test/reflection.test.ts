// Server reflection serves the real descriptor files, so clients the project
// did not write can list, describe and call the API knowing nothing but the
// socket: grpc-reflection-js (npm, protobufjs descriptors over grpc-js) and
// a C-core client (Debian's python3-grpcio + python3-protobuf building a
// descriptor pool, test/support/pyreflect.py).
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Client as ReflectionClient } from 'grpc-reflection-js';
import type * as protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerProcess, makeTempDir } from './support/broker-process';
import { buildClientProtoset, pyreflect } from './support/python-client';

const SERVICES = [
  'grpc.health.v1.Health',
  'grpc.reflection.v1.ServerReflection',
  'grpc.reflection.v1alpha.ServerReflection',
  'shmbroker.v1.AuditService',
  'shmbroker.v1.BrokerService',
  'shmbroker.v1.QuotaService',
];

describe('server reflection', () => {
  let broker: BrokerProcess;
  let sock: string;
  beforeAll(async () => {
    broker = await BrokerProcess.start();
    sock = path.join(broker.runtimeDir, 'broker.sock');
  });
  afterAll(async () => {
    await broker?.cleanup();
  });

  describe('grpc-reflection-js', () => {
    let client: ReflectionClient;
    beforeAll(() => {
      client = new ReflectionClient(`unix:${sock}`, grpc.credentials.createInsecure());
    });
    afterAll(() => client.grpcClient.close());

    it('lists every service', async () => {
      expect((await client.listServices()).sort()).toEqual(SERVICES);
    });

    it('describes shmbroker.v1.Region from its real file with snake_case names and json_name', async () => {
      const root = await client.fileContainingSymbol('shmbroker.v1.Region');
      const region = root.lookupType('shmbroker.v1.Region');
      const names = region.fieldsArray.map((f) => f.name);
      expect(names).toContain('size_bytes');
      expect(names).toContain('create_time');
      expect(region.fields['create_time']!.resolve().resolvedType!.fullName).toBe('.google.protobuf.Timestamp');
      // The file is there under its real path (protobufjs roots do not keep file names).
      const byName = await client.fileByFilename('shmbroker/v1/broker.proto');
      expect(byName.lookupType('shmbroker.v1.Region').fieldsArray.map((f) => f.name)).toEqual(names);
    });

    it('calls CreateRegion and ListRegions with only what reflection returned', async () => {
      const root = await client.fileContainingSymbol('shmbroker.v1.BrokerService');
      const service = root.lookupService('shmbroker.v1.BrokerService');
      const method = (name: string) => {
        const m = service.methods[name]!.resolve();
        const req = m.resolvedRequestType!;
        const res = m.resolvedResponseType!;
        return {
          path: `/shmbroker.v1.BrokerService/${name}`,
          requestStream: false,
          responseStream: false,
          requestSerialize: (o: object) => Buffer.from(req.encode(req.fromObject(o)).finish()),
          requestDeserialize: (b: Buffer) => req.decode(b),
          responseSerialize: (o: protobuf.Message) => Buffer.from(res.encode(o).finish()),
          responseDeserialize: (b: Buffer) => res.toObject(res.decode(b), { longs: String, enums: String }),
        };
      };
      const Ctor = grpc.makeGenericClientConstructor({ CreateRegion: method('CreateRegion'), ListRegions: method('ListRegions') }, 'BrokerService');
      const stub = new Ctor(`unix:${sock}`, grpc.credentials.createInsecure()) as any;
      const unary = (name: string, req: object) =>
        new Promise<any>((resolve, reject) => stub[name](req, (err: Error | null, res: unknown) => (err ? reject(err) : resolve(res))));
      const created = await unary('CreateRegion', { region_id: 'reflected-js', region: { size_bytes: 8192 } });
      expect(created.name).toBe('regions/reflected-js');
      expect(created.size_bytes).toBe('8192');
      const listed = await unary('ListRegions', {});
      expect(listed.regions.map((r: { name: string }) => r.name)).toContain('regions/reflected-js');
      stub.close();
    });
  });

  describe('C-core client (python3-grpcio) building a descriptor pool', () => {
    let protoset: string;
    let work: string;
    beforeAll(() => {
      work = makeTempDir('shmbroker-pyreflect-');
      protoset = buildClientProtoset(work);
    });
    afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

    const py = (commands: unknown[], uid = 1001) => pyreflect(sock, protoset, commands, uid);

    it('lists, describes, creates and lists as uid 1001', async () => {
      const [list, described, created, listed] = await py([
        ['list'],
        ['describe', 'shmbroker.v1.Region'],
        ['call', 'shmbroker.v1.BrokerService/CreateRegion', { regionId: 'reflected-py', region: { sizeBytes: '4096' } }],
        ['call', 'shmbroker.v1.BrokerService/ListRegions', {}],
      ]);
      expect(list.ok).toEqual(SERVICES);
      expect(described.ok.file).toBe('shmbroker/v1/broker.proto');
      expect(described.ok.dependencies).toContain('google/protobuf/timestamp.proto');
      const fields = Object.fromEntries(described.ok.fields.map((f: { name: string }) => [f.name, f]));
      expect(fields['size_bytes']).toMatchObject({ json_name: 'sizeBytes', number: 2 });
      expect(fields['create_time']).toMatchObject({ json_name: 'createTime', message_type: 'google.protobuf.Timestamp' });
      expect(fields['state']).toMatchObject({ enum_type: 'shmbroker.v1.RegionState' });
      expect(created.ok).toMatchObject({ name: 'regions/reflected-py', sizeBytes: '4096', ownerUid: 1001, state: 'REGION_STATE_ACTIVE' });
      expect(created.ok.createTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
      expect(listed.ok.regions.map((r: { name: string }) => r.name)).toContain('regions/reflected-py');
    });

    it('resolves the health and reflection services too', async () => {
      const [health] = await py([['call', 'grpc.health.v1.Health/Check', { service: 'shmbroker.v1.BrokerService' }]]);
      expect(health.ok).toEqual({ status: 'SERVING' });
    });

    it('an unknown symbol is NOT_FOUND in the reflection stream, not a broken stream', async () => {
      const [missing, found] = await py([['describe', 'shmbroker.v1.NoSuchThing'], ['describe', 'shmbroker.v1.Grant']]);
      expect(missing.reflection_error).toMatch(/^5: symbol "shmbroker.v1.NoSuchThing" not found$/);
      expect(found.ok.file).toBe('shmbroker/v1/broker.proto');
    });
  });
});
