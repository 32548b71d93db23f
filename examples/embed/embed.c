/* How an application embeds libstrelay (docs/node-library.md, "The C ABI"): the calls a
 * mobile app's native core makes, in a minimal C program.
 *
 *   strelay-embed SEED_FILE                        prints this node's public key
 *   strelay-embed SEED_FILE RELAY_TICKET FRIEND    says hello to FRIEND, prints its answer
 *
 * SEED_FILE stands for the app's keystore: 32 secret bytes, made once (here from
 * /dev/urandom, mode 0600). RELAY_TICKET is a .relay file (the app would scan its QR code);
 * FRIEND is the friend's .friend file. Build: cc embed.c $(pkg-config --cflags --libs strelay)
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <strelay.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int failed(const char* what, int status) {
  fprintf(stderr, "strelay-embed: %s: %s: %s\n", what, strelay_status_name(status),
          strelay_last_error());
  return 1;
}

/* The keystore: the seed is made once and kept; the library takes its own copy. */
static int load_seed(const char* path, uint8_t seed[STRELAY_KEY_BYTES]) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) {
    int random = open("/dev/urandom", O_RDONLY);
    if (random < 0 || read(random, seed, STRELAY_KEY_BYTES) != STRELAY_KEY_BYTES) return -1;
    close(random);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || write(fd, seed, STRELAY_KEY_BYTES) != STRELAY_KEY_BYTES) return -1;
    return close(fd);
  }
  if (read(fd, seed, STRELAY_KEY_BYTES) != STRELAY_KEY_BYTES) return -1;
  return close(fd);
}

static char* read_text(const char* path) {
  static char text[8192];
  FILE* f = fopen(path, "rb");
  size_t n;
  if (!f) return NULL;
  n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = '\0';
  return text;
}

/* Events arrive on the library's thread. An app hands them to its main thread here
 * (DispatchQueue.main.async, Handler.post, ...); this one just logs them. */
static void on_event(void* context, const strelay_event* event) {
  (void)context;
  if (event->type == STRELAY_EVENT_RELAY_UP)
    fprintf(stderr, "strelay-embed: online at %s\n", event->address);
  if (event->type == STRELAY_EVENT_PEER_CONNECTED)
    fprintf(stderr, "strelay-embed: connected via %s\n", event->address);
}

int main(int argc, char** argv) {
  uint8_t seed[STRELAY_KEY_BYTES];
  char key[STRELAY_KEY_TEXT_BYTES], hello[100], answer[4096];
  const char *relay, *friend_;
  strelay_node* node = NULL;
  strelay_stream* stream = NULL;
  size_t sent = 0;
  int status, eof = 0;
  if (argc != 2 && argc != 4) {
    fprintf(stderr, "usage: strelay-embed SEED_FILE [RELAY_TICKET FRIEND_TICKET]\n");
    return 2;
  }
  if (load_seed(argv[1], seed) != 0) return failed("the seed file", STRELAY_FILE);
  status = strelay_node_new_from_seed(seed, NULL, &node);
  memset(seed, 0, sizeof seed);
  if (status != STRELAY_OK) return failed("node", status);
  strelay_node_public_key_text(node, key);
  if (argc == 2) {
    printf("%s\n", key);
    strelay_node_free(node);
    return 0;
  }
  relay = read_text(argv[2]);
  if (!relay || (status = strelay_node_add_relay(node, relay)) != STRELAY_OK)
    return failed(argv[2], relay ? status : STRELAY_INVALID);
  friend_ = read_text(argv[3]);
  if (!friend_ || (status = strelay_node_add_friend(node, friend_)) != STRELAY_OK)
    return failed(argv[3], friend_ ? status : STRELAY_INVALID);
  strelay_node_set_event_callback(node, on_event, NULL);
  /* Online: the friend may call us too (strelay_node_accept, or STRELAY_EVENT_INCOMING). */
  if ((status = strelay_node_listen(node)) != STRELAY_OK) return failed("listen", status);

  /* A blocking call: an app makes it on a worker thread, never on its main thread. */
  if ((status = strelay_node_connect(node, friend_, &stream)) != STRELAY_OK)
    return failed("connect", status);
  snprintf(hello, sizeof hello, "hello from %s\n", key);
  while (sent < strlen(hello)) { /* non-blocking: takes what fits in the send buffer */
    int64_t n = strelay_stream_write(stream, hello + sent, strlen(hello) - sent);
    if (n == STRELAY_AGAIN)
      strelay_stream_wait(stream, STRELAY_WRITABLE, 1000);
    else if (n < 0)
      return failed("write", (int)n);
    else
      sent += (size_t)n;
  }
  strelay_stream_shutdown(stream); /* our end of data; the answer still comes */
  while (!eof) {
    int64_t n = strelay_stream_read(stream, answer, sizeof answer);
    if (n == STRELAY_AGAIN)
      strelay_stream_wait(stream, STRELAY_READABLE, 1000);
    else if (n < 0)
      return failed("read", (int)n);
    else if (n == 0)
      eof = 1;
    else
      fwrite(answer, 1, (size_t)n, stdout);
  }
  strelay_stream_close(stream, STRELAY_CLOSE_NORMAL, NULL);
  strelay_stream_wait(stream, STRELAY_ENDED, 10000);
  status = strelay_stream_status(stream);
  strelay_stream_free(stream);
  strelay_node_free(node); /* ends the library's thread */
  return status == STRELAY_OK ? 0 : failed("close", status);
}
