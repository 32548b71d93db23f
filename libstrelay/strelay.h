/* libstrelay: the strelay node library's C ABI (C99; docs/node-library.md, "The C ABI").
 *
 * A node holds an identity, listens on relays and connects to friends through them; a stream
 * is one end-to-end encrypted byte stream to a friend. Every call returns at once except
 * strelay_node_connect, strelay_node_accept (with a timeout) and strelay_stream_wait, which
 * block the calling thread.
 *
 * Threads: each node runs its own event-loop thread. Every function may be called from any
 * thread. Events (strelay_node_set_event_callback) and the accept filter are called on the
 * node's thread, one at a time, never from inside a strelay_* call: a callback may call any
 * function except the blocking ones (they return STRELAY_WRONG_THREAD there) and the *_free
 * functions of the handle the event names.
 *
 * Handles: strelay_node_close / strelay_stream_close end a handle's activity and may be called
 * at any time from any thread (a blocked call on the handle then returns); *_free releases it,
 * once no other thread is inside a call on it. Freeing a node ends its streams (their calls
 * return STRELAY_CLOSED); stream handles must still be freed.
 *
 * Errors: every int-returning function returns STRELAY_OK (0), a count (reads, writes), or a
 * negative strelay_status; strelay_last_error() describes the calling thread's last failure in
 * one line (never a secret). */
#ifndef STRELAY_H
#define STRELAY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Only these functions are exported (the library's version script makes every other symbol
   local). */
#if defined(STRELAY_BUILDING_LIBRARY) && defined(__GNUC__)
#define STRELAY_API __attribute__((visibility("default")))
#else
#define STRELAY_API
#endif

#define STRELAY_KEY_BYTES 32
/* A base64url public key: 43 characters and the terminating NUL. */
#define STRELAY_KEY_TEXT_BYTES 44

typedef enum strelay_status {
  STRELAY_OK = 0,
  STRELAY_AGAIN = -1,             /* nothing now: wait (an event, strelay_stream_wait) */
  STRELAY_INVALID = -2,           /* a bad argument: null handle, bad key, ticket or option */
  STRELAY_FILE = -3,              /* an identity file that cannot be used */
  STRELAY_CLOSED = -4,            /* closed here, or the peer closed before its end of data */
  STRELAY_TIMEOUT = -5,           /* a deadline passed */
  STRELAY_UNREACHABLE = -6,       /* no relay could be reached */
  STRELAY_REFUSED = -7,           /* the peer or a relay said no */
  STRELAY_IDENTITY_MISMATCH = -8, /* a relay or the peer does not hold the pinned key */
  STRELAY_INTEGRITY = -9,         /* data failed to authenticate: tampering on the path */
  STRELAY_LOST = -10,             /* the connection ended without a close */
  STRELAY_OTHER_VERSION = -11,    /* a relay or the peer speaks another protocol version */
  STRELAY_WRONG_THREAD = -12,     /* a blocking call from the node's own thread (a callback) */
  STRELAY_INTERNAL = -13          /* out of memory, or a bug */
} strelay_status;

/* The calling thread's last error, one line; "" when none. Valid until its next strelay call. */
STRELAY_API const char* strelay_last_error(void);
/* A status's name, e.g. "STRELAY_REFUSED". */
STRELAY_API const char* strelay_status_name(int status);
/* The library's version, "0.1.0". */
STRELAY_API const char* strelay_version(void);

typedef struct strelay_node strelay_node;
typedef struct strelay_stream strelay_stream;

/* Timers in seconds; 0 keeps the library's default. Set struct_size = sizeof(strelay_options)
 * (fields added later go at the end). log_level: 0 errors only (the default), 1 warnings,
 * 2 information, 3 debug; lines go to stderr. */
typedef struct strelay_options {
  uint32_t struct_size;
  int32_t log_level;
  double backoff_initial;
  double backoff_cap;
  double connect_timeout;
  double keepalive_interval;
  double dead_peer_timeout;
} strelay_options;

/* ---- nodes */

/* From an identity file (stmgr gen-ident: mode 0600, owned by the caller). */
STRELAY_API int strelay_node_new_from_file(const char* identity_path,
                                           const strelay_options* options, strelay_node** out);
/* From the 32 seed bytes an app's keystore holds; the library keeps its own wiped copy. */
STRELAY_API int strelay_node_new_from_seed(const uint8_t seed[STRELAY_KEY_BYTES],
                                           const strelay_options* options, strelay_node** out);
/* Stops listening, ends every stream, stops the node's thread. Idempotent. */
STRELAY_API int strelay_node_close(strelay_node* node);
/* Closes (if not yet) and releases the handle. NULL is ignored. */
STRELAY_API void strelay_node_free(strelay_node* node);

STRELAY_API int strelay_node_public_key(strelay_node* node, uint8_t out[STRELAY_KEY_BYTES]);
STRELAY_API int strelay_node_public_key_text(strelay_node* node, char out[STRELAY_KEY_TEXT_BYTES]);

/* A relay ticket's JSON text (a .relay file's content): listened on by strelay_node_listen,
 * and tried by strelay_node_connect after a friend ticket's own relays. */
STRELAY_API int strelay_node_add_relay(strelay_node* node, const char* relay_ticket_json);

/* Accept policy: only friends may connect. `friend_` is a base64url key or a friend ticket's
 * JSON text. Applies to connects from now on. */
STRELAY_API int strelay_node_add_friend(strelay_node* node, const char* friend_);
STRELAY_API int strelay_node_remove_friend(strelay_node* node, const char* friend_);

/* Listens on every added relay (one connection each, reconnecting with backoff). */
STRELAY_API int strelay_node_listen(strelay_node* node);
STRELAY_API int strelay_node_stop_listening(strelay_node* node);
/* After a network change: every relay connection reconnects now. */
STRELAY_API int strelay_node_reconnect_now(strelay_node* node);

/* The next incoming stream from a friend. timeout_ms: 0 polls (STRELAY_AGAIN when none),
 * -1 waits until one comes or the node is closed. */
STRELAY_API int strelay_node_accept(strelay_node* node, int timeout_ms, strelay_stream** out);

/* Connects to a friend: `friend_` is a friend ticket's JSON text (its relays are tried in
 * order, then the node's own) or a base64url key (the node's relays). Blocks until a stream is
 * up or every relay failed (each attempt has its own deadlines). Not from a callback. */
STRELAY_API int strelay_node_connect(strelay_node* node, const char* friend_, strelay_stream** out);

/* ---- accept policy and events (called on the node's thread; see the top of this file) */

/* After the friend list: return nonzero to take the stream, 0 to close it (not allowed). */
typedef int (*strelay_accept_fn)(void* context, const uint8_t peer[STRELAY_KEY_BYTES]);
STRELAY_API int strelay_node_set_accept_filter(strelay_node* node, strelay_accept_fn filter,
                                               void* context);

typedef enum strelay_event_type {
  STRELAY_EVENT_RELAY_UP = 1,    /* key, address: listening on this relay */
  STRELAY_EVENT_RELAY_DOWN,      /* key, address, status, value_us: retry in */
  STRELAY_EVENT_RELAY_RTT,       /* key, address, value_us */
  STRELAY_EVENT_CONNECT_FAILED,  /* key (the relay), address, status: trying the next one */
  STRELAY_EVENT_PEER_CONNECTED,  /* key (the peer), address (via) */
  STRELAY_EVENT_PEER_GONE,       /* key, status (STRELAY_OK after a clean end) */
  STRELAY_EVENT_PEER_RTT,        /* key, value_us */
  STRELAY_EVENT_INCOMING,        /* key: a stream waits for strelay_node_accept */
  STRELAY_EVENT_STREAM_READABLE, /* stream: bytes, the end of data or an error to read */
  STRELAY_EVENT_STREAM_WRITABLE, /* stream: room again after STRELAY_AGAIN from a write */
  STRELAY_EVENT_STREAM_ENDED     /* stream, status: the stream is over */
} strelay_event_type;

/* Valid during the callback only. */
typedef struct strelay_event {
  int type;
  int status;
  const uint8_t* key;     /* 32 bytes, or NULL */
  const char* address;    /* a relay's "host:port", or NULL */
  int64_t value_us;       /* a round-trip time or a delay, in microseconds */
  strelay_stream* stream; /* STREAM_* events, or NULL */
} strelay_event;

typedef void (*strelay_event_fn)(void* context, const strelay_event* event);
/* NULL removes it. Events before it was set are not replayed. */
STRELAY_API int strelay_node_set_event_callback(strelay_node* node, strelay_event_fn callback,
                                                void* context);

/* ---- streams */

/* Reads up to `size` (> 0) bytes: the count (> 0), 0 once the peer sent its end of data,
 * STRELAY_AGAIN when nothing is buffered yet, or the error that ended the stream. */
STRELAY_API int64_t strelay_stream_read(strelay_stream* stream, void* buffer, size_t size);
/* Takes up to `size` bytes into the send buffer: the count taken (> 0), STRELAY_AGAIN when the
 * buffer is full (STRELAY_EVENT_STREAM_WRITABLE follows), STRELAY_CLOSED after a shutdown or
 * close, or the error that ended the stream. */
STRELAY_API int64_t strelay_stream_write(strelay_stream* stream, const void* bytes, size_t size);
/* Half-close: the end of data follows the bytes already written; reading goes on. */
STRELAY_API int strelay_stream_shutdown(strelay_stream* stream);

/* Close reasons (the protocol's): what the peer reads. */
#define STRELAY_CLOSE_NORMAL 0
#define STRELAY_CLOSE_PROTOCOL_ERROR 3
#define STRELAY_CLOSE_TIMEOUT 4
#define STRELAY_CLOSE_NOT_ALLOWED 8
#define STRELAY_CLOSE_INTERNAL 11
/* Sends the written bytes, then close{reason}; the outcome comes as STRELAY_EVENT_STREAM_ENDED
 * and from strelay_stream_status. Idempotent; from any thread. */
STRELAY_API int strelay_stream_close(strelay_stream* stream, int reason, const char* detail);
/* Releases the handle; a stream neither closed nor ended is aborted. NULL is ignored. */
STRELAY_API void strelay_stream_free(strelay_stream* stream);

#define STRELAY_READABLE 1 /* strelay_stream_read would not return STRELAY_AGAIN */
#define STRELAY_WRITABLE 2 /* strelay_stream_write would not return STRELAY_AGAIN */
#define STRELAY_ENDED 4    /* the stream is over (strelay_stream_status says how) */
/* Waits until one of `events` holds: returns the mask of those that hold (0 at the timeout).
 * timeout_ms -1 waits without a limit. Not from a callback. */
STRELAY_API int strelay_stream_wait(strelay_stream* stream, int events, int timeout_ms);
/* STRELAY_AGAIN while the stream runs; STRELAY_OK after a clean end; else why it ended. */
STRELAY_API int strelay_stream_status(strelay_stream* stream);

STRELAY_API int strelay_stream_peer(strelay_stream* stream, uint8_t out[STRELAY_KEY_BYTES]);
/* Bytes the application wrote that went out, bytes it read, and the last round-trip time in
 * microseconds (-1 before the first). Any pointer may be NULL. */
STRELAY_API int strelay_stream_stats(strelay_stream* stream, uint64_t* sent, uint64_t* received,
                                     int64_t* rtt_us);

#ifdef __cplusplus
}
#endif

#endif /* STRELAY_H */
