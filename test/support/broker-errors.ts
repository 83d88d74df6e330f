// For unit tests of the broker's handlers: the registry reason of the
// BrokerError a call throws (and a failure if it throws anything else, or
// nothing).
import { expect } from 'vitest';
import { BrokerError } from '../../service/errors';

export function reasonOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BrokerError);
    return (err as BrokerError).reason;
  }
  throw new Error('expected a BrokerError');
}
