// gRPC server reflection (grpc.reflection.v1 and v1alpha) over the real
// FileDescriptorSet that scripts/build-descriptor-set.js builds from the
// protos with buf. Each file is served byte for byte as buf wrote it: its
// real path ("shmbroker/v1/broker.proto"), its real dependencies, snake_case
// field names with json_name, options and comments. (The reflection of
// @grpc/reflection re-synthesises one file per package from the loaded JS
// objects, without imports and in camelCase, which no descriptor-pool client
// can resolve; see docs/ARCHITECTURE.md, "Reflection".)
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import * as protobuf from 'protobufjs';
import * as descriptor from 'protobufjs/ext/descriptor';

interface FileEntry {
  name: string;
  bytes: Buffer;
  dependencies: string[];
}

interface DecodedFile {
  name?: string;
  package?: string;
  dependency?: string[];
  messageType?: DecodedMessage[];
  enumType?: { name?: string }[];
  service?: { name?: string; method?: { name?: string }[] }[];
  extension?: DecodedField[];
}
interface DecodedMessage {
  name?: string;
  field?: DecodedField[];
  nestedType?: DecodedMessage[];
  enumType?: { name?: string }[];
  extension?: DecodedField[];
}
interface DecodedField {
  name?: string;
  number?: number;
  extendee?: string;
}

/** What reflection can answer, indexed once from the descriptor set. */
export class DescriptorIndex {
  private readonly files = new Map<string, FileEntry>();
  private readonly symbols = new Map<string, string>();
  /** extendee (no leading dot) -> field number -> file name */
  private readonly extensions = new Map<string, Map<number, string>>();
  readonly serviceNames: string[] = [];

  constructor(descriptorSet: Uint8Array) {
    // FileDescriptorSet is `repeated FileDescriptorProto file = 1`: split it
    // on the wire so every file keeps its exact bytes (protobufjs would drop
    // unknown options such as google.api.field_behavior on re-encoding).
    const reader = protobuf.Reader.create(descriptorSet);
    while (reader.pos < reader.len) {
      const tag = reader.uint32();
      if (tag >>> 3 !== 1 || (tag & 7) !== 2) {
        reader.skipType(tag & 7);
        continue;
      }
      const bytes = Buffer.from(reader.bytes());
      const file = descriptor.FileDescriptorProto.decode(bytes) as unknown as DecodedFile;
      if (!file.name) continue;
      this.files.set(file.name, { name: file.name, bytes, dependencies: file.dependency ?? [] });
      this.indexFile(file);
    }
  }

  private indexFile(file: DecodedFile): void {
    const name = file.name!;
    const prefix = file.package ? `${file.package}.` : '';
    const add = (fqn: string) => this.symbols.set(fqn, name);
    const addExtension = (ext: DecodedField, scope: string) => {
      add(`${scope}${ext.name}`);
      const extendee = (ext.extendee ?? '').replace(/^\./, '');
      let numbers = this.extensions.get(extendee);
      if (!numbers) this.extensions.set(extendee, (numbers = new Map()));
      numbers.set(ext.number ?? 0, name);
    };
    const addMessage = (m: DecodedMessage, scope: string) => {
      const fqn = `${scope}${m.name}`;
      add(fqn);
      for (const f of m.field ?? []) add(`${fqn}.${f.name}`);
      for (const e of m.enumType ?? []) add(`${fqn}.${e.name}`);
      for (const n of m.nestedType ?? []) addMessage(n, `${fqn}.`);
      for (const x of m.extension ?? []) addExtension(x, `${fqn}.`);
    };
    for (const m of file.messageType ?? []) addMessage(m, prefix);
    for (const e of file.enumType ?? []) add(`${prefix}${e.name}`);
    for (const x of file.extension ?? []) addExtension(x, prefix);
    for (const s of file.service ?? []) {
      const fqn = `${prefix}${s.name}`;
      add(fqn);
      this.serviceNames.push(fqn);
      for (const m of s.method ?? []) add(`${fqn}.${m.name}`);
    }
  }

  /** The file and every file it depends on, transitively, the file first. */
  withDependencies(fileName: string): Buffer[] | undefined {
    if (!this.files.has(fileName)) return undefined;
    const seen = new Set<string>();
    const out: Buffer[] = [];
    const visit = (n: string) => {
      if (seen.has(n)) return;
      seen.add(n);
      const entry = this.files.get(n);
      if (!entry) return;
      out.push(entry.bytes);
      for (const d of entry.dependencies) visit(d);
    };
    visit(fileName);
    return out;
  }

  fileOfSymbol(symbol: string): string | undefined {
    return this.symbols.get(symbol.replace(/^\./, ''));
  }

  fileOfExtension(type: string, number: number): string | undefined {
    return this.extensions.get(type.replace(/^\./, ''))?.get(number);
  }

  extensionNumbers(type: string): number[] | undefined {
    const numbers = this.extensions.get(type.replace(/^\./, ''));
    if (!numbers && !this.symbols.has(type.replace(/^\./, ''))) return undefined;
    return [...(numbers?.keys() ?? [])].sort((a, b) => a - b);
  }
}

/** The reflection request as proto-loader decodes it with keepCase (v1 and v1alpha have one shape). */
interface ReflectionRequest {
  host?: string;
  message_request?: 'file_by_filename' | 'file_containing_symbol' | 'file_containing_extension' | 'all_extension_numbers_of_type' | 'list_services';
  file_by_filename?: string;
  file_containing_symbol?: string;
  file_containing_extension?: { containing_type?: string; extension_number?: number };
  all_extension_numbers_of_type?: string;
  list_services?: string;
}

const REFLECTION_PROTO_OPTIONS: protoLoader.Options = { keepCase: true, longs: Number, enums: String, defaults: false, oneofs: true };

export class ReflectionService {
  #index: DescriptorIndex | undefined;

  constructor(
    /** The descriptor set's bytes; indexed on the first request (decoding every file is ~17 ms of a broker's start). */
    private readonly descriptorSet: Uint8Array,
    /** Services the server really registers; reflection lists only those. */
    private readonly registered: () => string[],
  ) {}

  /** Reads the file now (a missing or unreadable set stops the start), indexes it when first asked. */
  static fromFile(descriptorSetPath: string, registered: () => string[]): ReflectionService {
    return new ReflectionService(fs.readFileSync(descriptorSetPath), registered);
  }

  private get index(): DescriptorIndex {
    this.#index ??= new DescriptorIndex(this.descriptorSet);
    return this.#index;
  }

  /** Adds grpc.reflection.v1.ServerReflection and its v1alpha twin (older clients only know that one). */
  addToServer(server: grpc.Server, protoDir: string): void {
    for (const version of ['v1', 'v1alpha']) {
      const file = path.join(protoDir, 'grpc', 'reflection', version, 'reflection.proto');
      const loaded = grpc.loadPackageDefinition(protoLoader.loadSync(file, REFLECTION_PROTO_OPTIONS)) as any;
      const service = loaded.grpc.reflection[version].ServerReflection.service as grpc.ServiceDefinition;
      server.addService(service, {
        ServerReflectionInfo: (stream: grpc.ServerDuplexStream<ReflectionRequest, unknown>) => {
          stream.on('data', (request: ReflectionRequest) => {
            let reply: Record<string, unknown>;
            try {
              reply = this.answer(request);
            } catch (err) {
              // The descriptor set is indexed on first use: a damaged file is
              // this request's error, not an uncaught exception in the broker.
              reply = { valid_host: request.host ?? '', original_request: request, error_response: { error_code: grpc.status.INTERNAL, error_message: `reflection: ${(err as Error).message}` } };
            }
            stream.write(reply);
          });
          stream.on('end', () => stream.end());
          stream.on('error', () => undefined);
        },
      });
    }
  }

  answer(request: ReflectionRequest): Record<string, unknown> {
    const base = { valid_host: request.host ?? '', original_request: request };
    const files = (name: string | undefined, what: string) => {
      const list = name === undefined ? undefined : this.index.withDependencies(name);
      if (!list) return { ...base, error_response: { error_code: grpc.status.NOT_FOUND, error_message: `${what} not found` } };
      return { ...base, file_descriptor_response: { file_descriptor_proto: list } };
    };
    switch (request.message_request) {
      case 'list_services': {
        const registered = new Set(this.registered());
        const service = this.index.serviceNames.filter((s) => registered.has(s)).map((name) => ({ name }));
        return { ...base, list_services_response: { service } };
      }
      case 'file_by_filename':
        return files(request.file_by_filename, `file ${JSON.stringify(request.file_by_filename)}`);
      case 'file_containing_symbol': {
        const symbol = request.file_containing_symbol ?? '';
        return files(this.index.fileOfSymbol(symbol), `symbol ${JSON.stringify(symbol)}`);
      }
      case 'file_containing_extension': {
        const ext = request.file_containing_extension ?? {};
        const type = ext.containing_type ?? '';
        return files(this.index.fileOfExtension(type, ext.extension_number ?? 0), `extension ${ext.extension_number} of ${type}`);
      }
      case 'all_extension_numbers_of_type': {
        const type = request.all_extension_numbers_of_type ?? '';
        const numbers = this.index.extensionNumbers(type);
        if (!numbers) return { ...base, error_response: { error_code: grpc.status.NOT_FOUND, error_message: `type ${JSON.stringify(type)} not found` } };
        return { ...base, all_extension_numbers_response: { base_type_name: type.replace(/^\./, ''), extension_number: numbers } };
      }
      default:
        return { ...base, error_response: { error_code: grpc.status.UNIMPLEMENTED, error_message: 'unknown reflection request' } };
    }
  }
}
