/* libstrelay under threads (tests/capi_stress_test.sh; ASan and TSan builds too): two nodes in
 * one process, one relay. Client threads open streams to the listener, send a pattern, read the
 * echo back byte-exact and close; some streams are aborted mid-transfer (freed unclosed), some
 * closed from another thread while their owner waits. Every accepted stream gets its own echo
 * thread. At the end the connecting node is freed with a stream still open (its calls then say
 * STRELAY_CLOSED), and the listener node is closed while a thread is blocked in accept.
 *
 *   capi_stress_test RELAY_TICKET_FILE      STRELAY_CAPI_ROUNDS: rounds per client (default 12),
 *                                           STRELAY_CAPI_LOG: the library's log level (0..3) */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "strelay.h"

enum { clients = 4, max_streams = 256, pattern_bytes = 100000 };

static strelay_node *listener, *connector;
static int rounds = 12;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t echo_threads[max_streams];
static int echo_count, echoed_ok, clients_ok, aborted, closed_elsewhere;

static void fail(const char* what, int status) {
  fprintf(stderr, "capi_stress: FAILED: %s: %s (%s)\n", what, strelay_status_name(status),
          strelay_last_error());
  exit(1);
}

static void count(int* counter) {
  pthread_mutex_lock(&lock);
  ++*counter;
  pthread_mutex_unlock(&lock);
}

/* Echoes until the peer's end of data, then closes. */
static void* echo(void* argument) {
  strelay_stream* s = argument;
  char buffer[16384];
  size_t have = 0, at = 0;
  int eof = 0, broken = 0;
  while (!broken) {
    int64_t n;
    int moved = 0;
    if (at < have) {
      n = strelay_stream_write(s, buffer + at, have - at);
      if (n > 0)
        at += (size_t)n, moved = 1;
      else if (n != STRELAY_AGAIN)
        broken = 1;
    }
    if (at == have && !broken) {
      at = have = 0;
      if (eof) break;
      n = strelay_stream_read(s, buffer, sizeof buffer);
      if (n > 0)
        have = (size_t)n, moved = 1;
      else if (n == 0)
        eof = moved = 1;
      else if (n != STRELAY_AGAIN)
        broken = 1;
    }
    /* Waits for what is missing: room for the pending bytes, or bytes to echo. */
    if (!moved && !broken) {
      strelay_stream_wait(s, at < have ? STRELAY_WRITABLE : STRELAY_READABLE, 1000);
    }
  }
  if (!broken) strelay_stream_shutdown(s);
  strelay_stream_close(s, STRELAY_CLOSE_NORMAL, "echo done");
  strelay_stream_wait(s, STRELAY_ENDED, 30000);
  if (!broken && strelay_stream_status(s) == STRELAY_OK) count(&echoed_ok);
  strelay_stream_free(s);
  return NULL;
}

static int accepted(void) {
  int n;
  pthread_mutex_lock(&lock);
  n = echo_count;
  pthread_mutex_unlock(&lock);
  return n;
}

static void* acceptor(void* unused) {
  (void)unused;
  for (;;) {
    strelay_stream* s = NULL;
    int status = strelay_node_accept(listener, -1, &s);
    if (status == STRELAY_CLOSED) return NULL; /* the main thread closed the node */
    if (status != STRELAY_OK) fail("accept", status);
    pthread_mutex_lock(&lock);
    if (echo_count == max_streams) fail("too many streams", 0);
    pthread_create(&echo_threads[echo_count++], NULL, echo, s);
    pthread_mutex_unlock(&lock);
  }
}

static strelay_stream* connect_retrying(const char* key) {
  strelay_stream* s = NULL;
  int tries, status = STRELAY_AGAIN;
  for (tries = 0; tries < 100; ++tries) {
    status = strelay_node_connect(connector, key, &s);
    if (status == STRELAY_OK) return s;
    if (status != STRELAY_REFUSED) break; /* not_found: the listener is not up yet */
    nanosleep(&(struct timespec){0, 100000000}, NULL);
  }
  fail("connect", status);
  return NULL;
}

static void* close_from_elsewhere(void* argument) {
  nanosleep(&(struct timespec){0, 20000000}, NULL);
  strelay_stream_close(argument, STRELAY_CLOSE_NORMAL, "closed by another thread");
  return NULL;
}

/* One stream: the pattern out, the echo back, compared. */
static void one_round(const char* key, int round, unsigned char* out, unsigned char* in) {
  strelay_stream* s = connect_retrying(key);
  size_t sent = 0, got = 0;
  pthread_t closer;
  int i;
  for (i = 0; i < pattern_bytes; ++i) out[i] = (unsigned char)(i * 7 + round);
  if (round % 4 == 3) { /* aborted mid-transfer: freed, never closed */
    strelay_stream_write(s, out, pattern_bytes / 2);
    strelay_stream_free(s);
    count(&aborted);
    return;
  }
  if (round % 4 == 2) { /* closed by another thread while this one waits */
    pthread_create(&closer, NULL, close_from_elsewhere, s);
    strelay_stream_wait(s, STRELAY_ENDED, 30000);
    pthread_join(closer, NULL);
    if (!(strelay_stream_wait(s, STRELAY_ENDED, 0) & STRELAY_ENDED)) fail("no end after close", 0);
    strelay_stream_free(s);
    count(&closed_elsewhere);
    return;
  }
  for (;;) { /* until the echo's end of data: closing before it would cut the echo short */
    int64_t n;
    if (sent < pattern_bytes) {
      n = strelay_stream_write(s, out + sent, pattern_bytes - sent);
      if (n > 0)
        sent += (size_t)n;
      else if (n != STRELAY_AGAIN)
        fail("write", (int)n);
      if (sent == pattern_bytes) strelay_stream_shutdown(s);
    }
    n = strelay_stream_read(s, in + got, pattern_bytes + 1 - got); /* room for one too many */
    if (n > 0 && (got += (size_t)n) > pattern_bytes)
      fail("more bytes than were sent", (int)got);
    else if (n == 0 && got == pattern_bytes)
      break;
    else if (n == 0)
      fail("early end of data", (int)got);
    else if (n < 0 && n != STRELAY_AGAIN)
      fail("read", (int)n);
    else if (n < 0)
      strelay_stream_wait(s, STRELAY_READABLE | (sent < pattern_bytes ? STRELAY_WRITABLE : 0),
                          1000);
  }
  if (memcmp(out, in, pattern_bytes) != 0) fail("the echo differs", 0);
  strelay_stream_close(s, STRELAY_CLOSE_NORMAL, NULL);
  strelay_stream_wait(s, STRELAY_ENDED, 30000);
  if (strelay_stream_status(s) != STRELAY_OK) fail("close", strelay_stream_status(s));
  strelay_stream_free(s);
  count(&clients_ok);
}

static void* client(void* key) {
  unsigned char* out = malloc(pattern_bytes);
  unsigned char* in = malloc(pattern_bytes + 1);
  int round;
  for (round = 0; round < rounds; ++round) one_round(key, round, out, in);
  free(out);
  free(in);
  return NULL;
}

static char* read_ticket(const char* path) {
  static char text[4096];
  FILE* f = fopen(path, "rb");
  size_t n;
  if (!f) fail(path, STRELAY_INVALID);
  n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = '\0';
  return text;
}

int main(int argc, char** argv) {
  uint8_t seed_a[STRELAY_KEY_BYTES], seed_b[STRELAY_KEY_BYTES];
  char key_a[STRELAY_KEY_TEXT_BYTES], key_b[STRELAY_KEY_TEXT_BYTES];
  pthread_t accept_thread, client_threads[clients];
  strelay_stream* left_open;
  strelay_options options;
  int i, status, expected_ok = 0;
  if (argc != 2) {
    fprintf(stderr, "usage: capi_stress_test RELAY_TICKET_FILE\n");
    return 2;
  }
  if (getenv("STRELAY_CAPI_ROUNDS")) rounds = atoi(getenv("STRELAY_CAPI_ROUNDS"));
  memset(seed_a, 0xa1, sizeof seed_a);
  memset(seed_b, 0xb2, sizeof seed_b);
  memset(&options, 0, sizeof options);
  options.struct_size = sizeof options;
  if (getenv("STRELAY_CAPI_LOG")) options.log_level = atoi(getenv("STRELAY_CAPI_LOG"));
  if ((status = strelay_node_new_from_seed(seed_a, &options, &listener))) fail("node a", status);
  if ((status = strelay_node_new_from_seed(seed_b, &options, &connector))) fail("node b", status);
  strelay_node_public_key_text(listener, key_a);
  strelay_node_public_key_text(connector, key_b);
  if ((status = strelay_node_add_relay(listener, read_ticket(argv[1])))) fail("relay", status);
  if ((status = strelay_node_add_relay(connector, read_ticket(argv[1])))) fail("relay", status);
  if ((status = strelay_node_add_friend(listener, key_b))) fail("friend", status);
  if ((status = strelay_node_listen(listener))) fail("listen", status);

  pthread_create(&accept_thread, NULL, acceptor, NULL);
  for (i = 0; i < clients; ++i) pthread_create(&client_threads[i], NULL, client, key_a);
  for (i = 0; i < clients; ++i) pthread_join(client_threads[i], NULL);
  for (i = 0; i < rounds; ++i) expected_ok += i % 4 < 2;

  /* A stream left open when its node goes: its calls then say so. */
  left_open = connect_retrying(key_a);
  strelay_node_free(connector);
  if (strelay_stream_write(left_open, "x", 1) != STRELAY_CLOSED) fail("write after node free", 0);
  strelay_stream_free(left_open);

  /* Every stream reaches an echo thread (aborted ones too: they were up), and every echo
   * ends (cleanly, or on the abort); only then is the listener closed under the acceptor. */
  for (i = 0; i < 600 && accepted() < clients * rounds + 1; ++i) {
    nanosleep(&(struct timespec){0, 50000000}, NULL);
  }
  if (accepted() != clients * rounds + 1) fail("not every stream was accepted", accepted());
  for (i = 0; i < accepted(); ++i) pthread_join(echo_threads[i], NULL);
  strelay_node_close(listener); /* the acceptor is blocked in accept(-1): it returns */
  pthread_join(accept_thread, NULL);
  strelay_node_free(listener);

  printf(
      "capi_stress: %d clients x %d rounds: %d echoed ok (want %d), %d aborted, %d closed "
      "from another thread; %d streams accepted, %d echoes ended cleanly\n",
      clients, rounds, clients_ok, clients * expected_ok, aborted, closed_elsewhere, echo_count,
      echoed_ok);
  if (clients_ok != clients * expected_ok) fail("not every round echoed", 0);
  if (echoed_ok < clients_ok) fail("fewer clean echo ends than clean rounds", echoed_ok);
  return 0;
}
