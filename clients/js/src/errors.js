// Errors of the library: StrelayError.code is the name of the C++ errc (common/errors.hpp).
import { CloseReason } from './protocol.js';

export class StrelayError extends Error {
  constructor(code, message, options) {
    super(message ?? code, options);
    this.name = 'StrelayError';
    this.code = code;
  }
}

export function error(code, message) {
  return new StrelayError(code, message);
}

// A file or ticket that cannot be used: one line that names the source and the problem.
export function file_error(source, cause) {
  return new StrelayError('bad_file', `${source}: ${cause}`);
}

// The error a node reports for a peer's authenticated close reason (docs/node-library.md).
export function error_for_close(reason) {
  switch (reason) {
    case CloseReason.normal: return null;
    case CloseReason.protocol_error: return 'protocol_error';
    case CloseReason.timeout: return 'timeout';
    case CloseReason.dead_peer: return 'peer_gone';
    case CloseReason.overloaded: return 'overloaded';
    case CloseReason.rate_limited: return 'rate_limited';
    case CloseReason.not_allowed: return 'not_allowed';
    case CloseReason.stalled: return 'stalled';
    case CloseReason.peer_gone: return 'peer_gone';
    case CloseReason.replaced: return 'replaced';
    case CloseReason.shutdown: return 'shutdown';
    default: return 'internal';
  }
}
