// strelay's node library in JavaScript: the public API (docs/node-library.md, "The JavaScript
// library"). The same protocol as common/, for browsers (WebSocket) and Node 20 (ws, net).
export { ready } from './sodium.js';
export { StrelayError } from './errors.js';
export { Identity } from './identity_file.js';
export { parseRelayTicket, formatRelayTicket, parseFriendTicket, formatFriendTicket } from './tickets.js';
export { publicKeyToString, publicKeyFromString } from './keys.js';
export { Node } from './node.js';
export { Stream } from './stream.js';
export { tcp_carrier as tcpCarrier, websocket_carrier as websocketCarrier, default_websocket_url as defaultWebSocketUrl } from './carrier.js';
