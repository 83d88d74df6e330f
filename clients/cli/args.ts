// Argument parsing shared by the CLI commands: strict, with the flag named in every error.
import { InvalidArgumentError } from '../sdk/errors';

export function parseNonNegativeInt(flag: string, text: string, max = 0xffffffff): number {
  if (!/^[0-9]+$/.test(text) || Number(text) > max) {
    throw new InvalidArgumentError('INVALID_ARGUMENT', 'INVALID_NUMBER', `${flag} must be an integer between 0 and ${max}, got ${JSON.stringify(text)}`);
  }
  return Number(text);
}
