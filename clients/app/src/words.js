// Plain words for what the node library reports: relay states and error codes (the C++ errc
// names, docs/node-library.md). A person reads these, so each says what happened and, where
// there is one, what to do.

// retryInS: seconds until the next attempt, when the library scheduled one (it always does
// after a failure: a relay may come back, or its operator fix the key).
export function relayStateWords(state, retryInS) {
  const retry = retryInS === undefined || retryInS === null ? '' : `; retrying in ${retryInS} s`;
  switch (state) {
    case 'connecting': return 'Connecting...';
    case 'connected': return 'Connected: friends can reach you here';
    case 'retrying': return `Lost${retry}`;
    case 'identity_mismatch':
      return `Wrong relay: the server at this address does not hold the key in the ticket ` +
        `(ask the operator for a fresh ticket)${retry}`;
    case 'unreachable': return `Unreachable: no answer at this address${retry}`;
    case 'refused': return `Refused: this relay does not admit this app (a private relay?)${retry}`;
    case 'closed': return 'Stopped';
    default: return state;
  }
}

const codeWords = {
  relay_unreachable: 'no relay of theirs could be reached',
  relay_identity_mismatch: 'a relay did not hold the key in its ticket',
  not_found: 'they are not listening on their relays right now',
  rejected: 'they refused the connection (are you in their friends?)',
  not_allowed: 'they do not accept you (you are not in their friends)',
  timeout: 'no answer in time',
  peer_gone: 'the other side is gone',
  rate_limited: 'the relay says: too many attempts, wait a little',
  overloaded: 'the relay is overloaded, try again later',
  no_pending: 'the connection was no longer waiting',
  peer_identity_mismatch: 'the other side is not who the ticket says',
  decrypt_failed: 'data was tampered with on the way; the conversation was stopped',
  protocol_error: 'the other side saw damaged data; the conversation was stopped',
  channel_closed: 'the other side closed before the end of its data',
  aborted: 'the connection was cut',
};

export function errorWords(error) {
  if (!error) return 'ended';
  const code = error.code ?? error;
  return codeWords[code] ?? (error.message || String(code));
}

export function byteWords(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1024 * 1024)).toFixed(2)} MiB`;
}
