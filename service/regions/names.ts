// Resource names (AIP-122): "regions/{region}" and
// "regions/{region}/grants/{grant}", with the region id rule the clients
// check too (proto/wire/region-name.ts).
import { ACCESS_MODE_RULE, fromAccessMode, REGION_ID_PATTERN, REGION_ID_RULE, type GrantMode } from '../../proto/wire';
import { InvalidArgumentError, NotFoundError } from '../errors';

export { REGION_ID_PATTERN };

export function validateRegionId(id: unknown, field = 'region_id'): string {
  if (typeof id !== 'string' || id.length === 0) {
    throw new InvalidArgumentError('INVALID_REGION_NAME', `${field} is required`);
  }
  if (!REGION_ID_PATTERN.test(id)) {
    throw new InvalidArgumentError(
      'INVALID_REGION_NAME',
      `${field} ${JSON.stringify(id.slice(0, 80))} is not a valid region name: ${REGION_ID_RULE}`,
    );
  }
  return id;
}

export function regionName(id: string): string {
  return `regions/${id}`;
}

/** Accepts "regions/{id}" (and, for convenience of the CLI, a bare id is NOT accepted here: resource names are exact). */
export function parseRegionName(name: unknown, field = 'name'): string {
  if (typeof name !== 'string' || !name.startsWith('regions/')) {
    throw new InvalidArgumentError('INVALID_RESOURCE_NAME', `${field} must look like "regions/{region}", got ${JSON.stringify(String(name).slice(0, 80))}`);
  }
  return validateRegionId(name.slice('regions/'.length), field);
}

export function grantName(region: string, id: number): string {
  return `regions/${region}/grants/${id}`;
}

/** Accepts "regions/{region}/grants/{id}", "regions/-/grants/{id}" or "grants/{id}". */
export function parseGrantName(name: unknown, field = 'name'): { region?: string; id: number } {
  const text = typeof name === 'string' ? name : '';
  const m = /^(?:regions\/([^/]+)\/)?grants\/([0-9]{1,15})$/.exec(text);
  if (!m) {
    throw new InvalidArgumentError(
      'INVALID_RESOURCE_NAME',
      `${field} must look like "regions/{region}/grants/{grant}" or "grants/{grant}", got ${JSON.stringify(String(name).slice(0, 80))}`,
    );
  }
  const id = Number(m[2]);
  if (!Number.isSafeInteger(id) || id <= 0) {
    throw new InvalidArgumentError('INVALID_RESOURCE_NAME', `${field}: grant id must be a positive integer`);
  }
  if (m[1] === undefined || m[1] === '-') return { id };
  return { region: validateRegionId(m[1], field), id };
}

/** The mode a request's AccessMode asks for; INVALID_MODE for UNSPECIFIED or anything unknown. */
export function requireAccessMode(mode: unknown, field = 'mode'): GrantMode {
  const m = fromAccessMode(mode);
  if (!m) throw new InvalidArgumentError('INVALID_MODE', `${field} must be ${ACCESS_MODE_RULE}`);
  return m;
}

/**
 * The one answer for a region that is missing or that the caller may not
 * see (issue 16 item 6, AIP-211): byte for byte the same, so a caller
 * without access never learns that a name is a region.
 */
export function regionNotFound(name: string, caller: { uid: number }): NotFoundError {
  return new NotFoundError('REGION_NOT_FOUND', `region ${regionName(name)} does not exist or is not visible to uid ${caller.uid}`);
}

/** The one answer for a grant that is missing or that the caller may not see. */
export function grantNotFound(resource: string, caller: { uid: number }): NotFoundError {
  return new NotFoundError('GRANT_NOT_FOUND', `grant ${resource} does not exist or is not visible to uid ${caller.uid}`);
}
