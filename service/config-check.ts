// `shmbroker config check FILE`: every problem of a configuration file, each
// on its own line as FILE:LINE: FIELD: PROBLEM, without starting anything
// (the same loader `serve` and SIGHUP use, so what passes here starts).
import { ConfigError, loadConfig } from './config';

export interface ConfigCheck {
  file: string;
  ok: boolean;
  problems: Array<{ line: number; field: string; message: string; text: string }>;
}

export function checkConfigFile(file: string): ConfigCheck {
  try {
    loadConfig(file);
    return { file, ok: true, problems: [] };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return {
      file,
      ok: false,
      problems: err.problems.map((p) => ({ ...p, text: `${err.file}:${p.line}: ${p.field || '(document)'}: ${p.message}` })),
    };
  }
}
