/* A node written in C99 against libstrelay's header only (tests/capi_test.sh drives it against
 * stcat through a real relay; tests/CMakeLists.txt compiles it with -std=c99 -Wall -Werror).
 *
 *   capi_test selftest                          the API's answers without a network
 *   capi_test listen IDFILE ALLOW_KEY SEND RECV RELAY...
 *   capi_test connect IDFILE FRIEND SEND RECV [RELAY...]
 *   capi_test refuse IDFILE KEY RELAY           listens for the friend KEY with an accept filter
 *                                               that refuses: prints "refused N" after one
 *
 * listen/connect: one stream; the bytes of the file SEND go to the peer, then the end of data;
 * the peer's bytes go to the file RECV until its end of data; then close. FRIEND is a .friend
 * file or a base64url key. Events are printed on stderr ("capi: relay up ..."). Exit 0 when
 * the stream ended cleanly, 3 when it did not, 1 on a failed check, 2 on usage. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "strelay.h"

static void die(const char* what, int status) {
  fprintf(stderr, "capi: %s: %s (%s)\n", what, strelay_status_name(status), strelay_last_error());
  exit(1);
}

static void expect(const char* what, int got, int want) {
  if (got != want) {
    fprintf(stderr, "capi: FAILED: %s: got %s, want %s (%s)\n", what, strelay_status_name(got),
            strelay_status_name(want), strelay_last_error());
    exit(1);
  }
}

/* A whole file in a NUL-terminated buffer (tickets), or NULL. */
static char* read_file(const char* path, size_t* size) {
  FILE* f = fopen(path, "rb");
  char* text = NULL;
  size_t used = 0, cap = 0, n;
  if (!f) return NULL;
  do {
    if (cap - used < 65536) {
      cap = cap * 2 + 65536;
      text = realloc(text, cap + 1);
      if (!text) exit(1);
    }
    n = fread(text + used, 1, cap - used, f);
    used += n;
  } while (n > 0);
  fclose(f);
  text[used] = '\0';
  if (size) *size = used;
  return text;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* An int that the library's thread writes and the program's thread reads, under its lock. */
static int read_locked(pthread_mutex_t* lock, const int* value) {
  int n;
  pthread_mutex_lock(lock);
  n = *value;
  pthread_mutex_unlock(lock);
  return n;
}

/* The stream's end events seen so far (set on the library's thread, read by the session). */
static pthread_mutex_t ends_lock = PTHREAD_MUTEX_INITIALIZER;
static int ends_seen;
enum { SEEN_PEER_GONE = 1, SEEN_STREAM_ENDED = 2 };

static void saw_end(int which) {
  pthread_mutex_lock(&ends_lock);
  ends_seen |= which;
  pthread_mutex_unlock(&ends_lock);
}

/* Events arrive on the library's thread, after the call or the wait that caused them returned;
 * the ones still pending when a node is freed die with it (docs/node-library.md, "Closing").
 * So the session waits, up to 10 s, for both end events before it frees anything. */
static void await_end_events(void) {
  const struct timespec tick = {0, 10 * 1000 * 1000};
  int seen = 0, i;
  for (i = 0; i < 1000; ++i) {
    seen = read_locked(&ends_lock, &ends_seen);
    if (seen == (SEEN_PEER_GONE | SEEN_STREAM_ENDED)) return;
    nanosleep(&tick, NULL);
  }
  fprintf(stderr, "capi: the end events did not all arrive within 10 s (seen %d)\n", seen);
}

static void on_event(void* context, const strelay_event* e) {
  const char* address = e->address ? e->address : "?";
  strelay_node* node = context;
  switch (e->type) {
    case STRELAY_EVENT_INCOMING: {
      /* On the library's thread: a blocking call is refused, a non-blocking one works. */
      strelay_stream* none = NULL;
      char key[STRELAY_KEY_TEXT_BYTES];
      fprintf(stderr, "capi: in a callback: blocking accept %s, public key %s\n",
              strelay_status_name(strelay_node_accept(node, 100, &none)),
              strelay_status_name(strelay_node_public_key_text(node, key)));
      break;
    }
    case STRELAY_EVENT_RELAY_UP: fprintf(stderr, "capi: relay up %s\n", address); break;
    case STRELAY_EVENT_RELAY_DOWN:
      fprintf(stderr, "capi: relay down %s: %s\n", address, strelay_status_name(e->status));
      break;
    case STRELAY_EVENT_CONNECT_FAILED:
      fprintf(stderr, "capi: connect via %s failed: %s\n", address, strelay_status_name(e->status));
      break;
    case STRELAY_EVENT_PEER_CONNECTED: fprintf(stderr, "capi: connected via %s\n", address); break;
    case STRELAY_EVENT_PEER_RTT:
      if (e->value_us > 0) fprintf(stderr, "capi: peer rtt %lld us\n", (long long)e->value_us);
      break;
    case STRELAY_EVENT_PEER_GONE:
      fprintf(stderr, "capi: peer gone: %s\n", strelay_status_name(e->status));
      saw_end(SEEN_PEER_GONE);
      break;
    case STRELAY_EVENT_STREAM_ENDED:
      fprintf(stderr, "capi: stream ended: %s\n", strelay_status_name(e->status));
      saw_end(SEEN_STREAM_ENDED);
      break;
    default: break;
  }
}

static void selftest(void) {
  uint8_t seed[STRELAY_KEY_BYTES], key1[STRELAY_KEY_BYTES], key2[STRELAY_KEY_BYTES];
  char text[STRELAY_KEY_TEXT_BYTES];
  strelay_node *node = NULL, *again = NULL;
  strelay_stream* stream = NULL;
  strelay_options options;
  memset(seed, 7, sizeof seed);
  memset(&options, 0, sizeof options);
  options.struct_size = sizeof options;
  options.connect_timeout = 1;

  expect("seed node", strelay_node_new_from_seed(seed, &options, &node), STRELAY_OK);
  expect("same seed again", strelay_node_new_from_seed(seed, NULL, &again), STRELAY_OK);
  expect("public key", strelay_node_public_key(node, key1), STRELAY_OK);
  expect("public key again", strelay_node_public_key(again, key2), STRELAY_OK);
  expect("one seed, one key", memcmp(key1, key2, sizeof key1), 0);
  expect("key text", strelay_node_public_key_text(node, text), STRELAY_OK);
  expect("key text length", (int)strlen(text), 43);
  strelay_node_free(again);

  expect("no identity file", strelay_node_new_from_file("/nonexistent/x.ident", NULL, &again),
         STRELAY_FILE);
  if (strlen(strelay_last_error()) == 0) die("no message for a missing file", STRELAY_FILE);
  options.struct_size = 4;
  expect("short options", strelay_node_new_from_seed(seed, &options, &again), STRELAY_INVALID);
  options.struct_size = sizeof options;
  options.keepalive_interval = 10;
  options.dead_peer_timeout = 5;
  expect("dead peer before keepalive", strelay_node_new_from_seed(seed, &options, &again),
         STRELAY_INVALID);

  expect("a bad relay ticket", strelay_node_add_relay(node, "{\"publicKey\": 1}"), STRELAY_INVALID);
  expect("a bad friend", strelay_node_add_friend(node, "not a key"), STRELAY_INVALID);
  expect("a friend by key", strelay_node_add_friend(node, text), STRELAY_OK);
  expect("listen with no relay", strelay_node_listen(node), STRELAY_INVALID);
  expect("accept polls", strelay_node_accept(node, 0, &stream), STRELAY_AGAIN);
  expect("accept times out", strelay_node_accept(node, 50, &stream), STRELAY_TIMEOUT);
  expect("connect with no relay", strelay_node_connect(node, text, &stream), STRELAY_UNREACHABLE);
  expect("close", strelay_node_close(node), STRELAY_OK);
  expect("close twice", strelay_node_close(node), STRELAY_OK);
  expect("listen after close", strelay_node_listen(node), STRELAY_CLOSED);
  expect("accept after close", strelay_node_accept(node, -1, &stream), STRELAY_CLOSED);
  strelay_node_free(node);
  strelay_node_free(NULL);
  strelay_stream_free(NULL);
  expect("null handle", strelay_stream_status(NULL), STRELAY_INVALID);
  if (strcmp(strelay_status_name(STRELAY_REFUSED), "STRELAY_REFUSED") != 0) die("names", 0);
  printf("capi: selftest ok (libstrelay %s)\n", strelay_version());
}

/* Sends `out`, then the end of data; writes what comes to `sink` until the peer's end. */
static int pump(strelay_stream* stream, const char* out, size_t out_size, FILE* sink) {
  static char buffer[65536];
  size_t sent = 0;
  int shut = 0, eof = 0;
  const double deadline = now_s() + 120;
  while (!(shut && eof)) {
    int64_t n = STRELAY_AGAIN;
    int want = 0;
    if (now_s() > deadline) die("no end within 120 s", STRELAY_TIMEOUT);
    while (sent < out_size && (n = strelay_stream_write(stream, out + sent, out_size - sent)) > 0) {
      sent += (size_t)n;
    }
    if (sent < out_size && n != STRELAY_AGAIN) die("write", (int)n);
    if (sent == out_size && !shut) {
      int status = strelay_stream_shutdown(stream);
      if (status != STRELAY_OK) die("shutdown", status);
      shut = 1;
    }
    while (!eof && (n = strelay_stream_read(stream, buffer, sizeof buffer)) > 0) {
      if (fwrite(buffer, 1, (size_t)n, sink) != (size_t)n) die("writing the output", 0);
    }
    if (!eof && n == 0) eof = 1;
    if (!eof && n != STRELAY_AGAIN) die("read", (int)n);
    if (!eof) want |= STRELAY_READABLE;
    if (sent < out_size) want |= STRELAY_WRITABLE;
    if (want && strelay_stream_wait(stream, want | STRELAY_ENDED, 1000) < 0) die("wait", -2);
  }
  return 0;
}

static int session(int listening, int argc, char** argv) {
  strelay_node* node = NULL;
  strelay_stream* stream = NULL;
  strelay_options options;
  size_t out_size = 0;
  char* out;
  FILE* sink;
  int i, status;
  memset(&options, 0, sizeof options);
  options.struct_size = sizeof options;
  options.backoff_initial = 0.2;
  options.backoff_cap = 2;
  options.connect_timeout = 2;
  status = strelay_node_new_from_file(argv[2], &options, &node);
  if (status != STRELAY_OK) die("identity", status);
  strelay_node_set_event_callback(node, on_event, node);
  for (i = 6; i < argc; ++i) {
    char* ticket = read_file(argv[i], NULL);
    if (!ticket) die(argv[i], STRELAY_INVALID);
    if ((status = strelay_node_add_relay(node, ticket)) != STRELAY_OK) die("relay", status);
    free(ticket);
  }
  out = read_file(argv[4], &out_size);
  sink = fopen(argv[5], "wb");
  if (!out || !sink) die("the send or receive file", STRELAY_INVALID);
  if (listening) {
    if ((status = strelay_node_add_friend(node, argv[3])) != STRELAY_OK) die("friend", status);
    if ((status = strelay_node_listen(node)) != STRELAY_OK) die("listen", status);
    if ((status = strelay_node_accept(node, 60000, &stream)) != STRELAY_OK) die("accept", status);
  } else {
    char* ticket = read_file(argv[3], NULL);
    status = strelay_node_connect(node, ticket ? ticket : argv[3], &stream);
    free(ticket);
    if (status != STRELAY_OK) die("connect", status);
  }
  pump(stream, out, out_size, sink);
  fclose(sink);
  free(out);
  strelay_stream_close(stream, STRELAY_CLOSE_NORMAL, NULL);
  if (!(strelay_stream_wait(stream, STRELAY_ENDED, 30000) & STRELAY_ENDED)) die("close", -5);
  status = strelay_stream_status(stream);
  {
    uint64_t sent = 0, received = 0;
    int64_t rtt_us = 0;
    strelay_stream_stats(stream, &sent, &received, &rtt_us);
    fprintf(stderr, "capi: stats: sent %llu received %llu rtt_known %d\n", (unsigned long long)sent,
            (unsigned long long)received, rtt_us > 0);
  }
  await_end_events();
  fprintf(stderr, "capi: done: %s\n", strelay_status_name(status));
  strelay_stream_free(stream);
  strelay_node_free(node);
  return status == STRELAY_OK ? 0 : 3;
}

static pthread_mutex_t refused_lock = PTHREAD_MUTEX_INITIALIZER;
static int refused;

/* The accept filter: runs on the library's thread; says no to everyone. */
static int refuse_all(void* context, const uint8_t peer[STRELAY_KEY_BYTES]) {
  (void)context;
  (void)peer;
  pthread_mutex_lock(&refused_lock);
  ++refused;
  pthread_mutex_unlock(&refused_lock);
  return 0;
}

static int refused_count(void) {
  return read_locked(&refused_lock, &refused);
}

/* A friend's stream refused by the filter never reaches accept. */
static int refuse(char** argv) {
  strelay_node* node = NULL;
  strelay_stream* stream = NULL;
  char* ticket = read_file(argv[4], NULL);
  int status, tries;
  if ((status = strelay_node_new_from_file(argv[2], NULL, &node)) != STRELAY_OK)
    die("identity", status);
  strelay_node_set_event_callback(node, on_event, node);
  if (!ticket) die(argv[4], STRELAY_INVALID);
  expect("relay", strelay_node_add_relay(node, ticket), STRELAY_OK);
  free(ticket);
  expect("friend", strelay_node_add_friend(node, argv[3]), STRELAY_OK);
  expect("filter", strelay_node_set_accept_filter(node, refuse_all, NULL), STRELAY_OK);
  expect("listen", strelay_node_listen(node), STRELAY_OK);
  for (tries = 0; tries < 120 && refused_count() == 0; ++tries) {
    expect("accept while refusing", strelay_node_accept(node, 500, &stream), STRELAY_TIMEOUT);
  }
  expect("accept after a refusal", strelay_node_accept(node, 1000, &stream), STRELAY_TIMEOUT);
  printf("refused %d\n", refused_count());
  strelay_node_free(node);
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 2 && strcmp(argv[1], "selftest") == 0) {
    selftest();
    return 0;
  }
  if (argc == 5 && strcmp(argv[1], "refuse") == 0) return refuse(argv);
  if (argc >= 7 && strcmp(argv[1], "listen") == 0) return session(1, argc, argv);
  if (argc >= 6 && strcmp(argv[1], "connect") == 0) return session(0, argc, argv);
  fprintf(stderr,
          "usage: capi_test selftest | listen IDFILE KEY SEND RECV RELAY... |"
          " connect IDFILE FRIEND SEND RECV [RELAY...] | refuse IDFILE KEY RELAY\n");
  return 2;
}
